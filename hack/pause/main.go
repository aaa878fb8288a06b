// Command pause is the pod sandbox ("pause") process of the e2e node: it holds the pod's
// namespaces and exits on SIGTERM or SIGINT, like registry.k8s.io/pause. Built static
// (CGO_ENABLED=0) by hack/build-node.sh and packed FROM scratch by hack/build-images.sh.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}
