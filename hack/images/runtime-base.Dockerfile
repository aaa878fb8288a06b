# A local stand-in for gcr.io/distroless/cc-debian12:nonroot, for machines that cannot pull
# images: hack/build-images.sh fills the context's rootfs/ with exactly the shared libraries
# that `ldd` lists for the binaries it packs, the CA certificates, /tmp, and the nonroot user
# (65532). No shell, no package manager.
FROM scratch
COPY rootfs/ /
USER 65532:65532
