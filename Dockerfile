# The tpp-operator image: the operator binary on a distroless runtime, as non-root (65532),
# without a shell, and without a system OpenSSL (the build vendors it).
#
#   docker build -t tpp-operator:0.1.0 .
#
# compiles in the builder stage and copies the stripped binary onto the runtime image. Both
# base images are build arguments. The e2e node tier, which cannot pull images, builds the
# binary on the host (same features) and passes BINARY=prebuilt with a context folder that
# holds `tpp-operator`, and a RUNTIME_IMAGE it made from the shared libraries the binary
# needs (hack/build-images.sh).
ARG BUILDER_IMAGE=docker.io/library/rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot
# Where the binary comes from: `builder` (compile here) or `prebuilt` (./tpp-operator in the
# build context).
ARG BINARY=builder

FROM ${BUILDER_IMAGE} AS builder
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p tpp-operator --bin tpp-operator --features vendored-openssl \
    && mkdir -p /out \
    && strip -o /out/tpp-operator target/release/tpp-operator

FROM scratch AS prebuilt
COPY tpp-operator /out/tpp-operator

# hadolint ignore=DL3006
FROM ${BINARY} AS binary

# hadolint ignore=DL3006
FROM ${RUNTIME_IMAGE}
LABEL org.opencontainers.image.title="tpp-operator" \
      org.opencontainers.image.description="Keeps Open Finance OAuth clients (TppClient) registered, keyed and tokened" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=binary /out/tpp-operator /usr/local/bin/tpp-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/tpp-operator"]
