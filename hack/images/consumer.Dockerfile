# The e2e workload that consumes a credentials Secret (e2e/src/bin/credentials-consumer.rs).
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot
# hadolint ignore=DL3006
FROM ${RUNTIME_IMAGE}
COPY credentials-consumer /usr/local/bin/credentials-consumer
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/credentials-consumer"]
