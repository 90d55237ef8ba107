// Command pause holds a pod's namespaces open until the runtime stops the sandbox: it
// sleeps until SIGINT or SIGTERM and exits 0, and reaps children it inherits as PID 1
// (a pod with a shared process namespace re-parents orphans to it).
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
