# The pod sandbox image of the e2e node (hack/pause, a static binary).
FROM scratch
COPY pause /pause
USER 65535:65535
ENTRYPOINT ["/pause"]
