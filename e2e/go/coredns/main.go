// Command coredns is CoreDNS, the real node's cluster DNS, built with only the plugins the
// node's Corefile uses (modeldeploy_e2e.nodeconfig.corefile). CoreDNS's own main compiles
// every plugin in its plugin.cfg, the cloud ones (route53, azure, clouddns), etcd and dnstap
// with their SDKs: a cold build of it costs 1.6 times the CPU of this one (e2e/README.md).
// This is CoreDNS's documented external main for choosing plugins at compile time: import
// the plugins, set dnsserver.Directives, call coremain.Run (flags, signals, -version and
// -plugins as stock).
package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/coredns/caddy"
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	// A plugin the Corefile names must be imported here, or CoreDNS refuses the Corefile
	// at start-up ("unknown directive"). Importing a plugin registers it, so the metadata,
	// prometheus and transfer plugins, which kubernetes and cache import, come along;
	// e2e/node_tests/test_node_binaries.py checks -plugins lists these and nothing else.
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/ready"
)

// serverType is the Caddy server type CoreDNS registers its plugins under ("dns").
const serverType = "dns"

// compiledIn lists the plugins registered for the DNS server type: the imports above and
// what they import, whose init functions have run before this package's init.
func compiledIn() []string {
	var names []string
	for _, name := range caddy.ListPlugins()["others"] {
		if plugin, ok := strings.CutPrefix(name, serverType+"."); ok {
			names = append(names, plugin)
		}
	}
	return names
}

// slimDirectives keeps, in their order, the stock directives whose plugin is compiled in.
// The order of the chain is semantic (a plugin sees only those after it) and is CoreDNS's
// plugin.cfg order, which the generated stock list holds: filtering it rather than writing
// the order again keeps the two from drifting when the pinned version moves.
func slimDirectives(stock, plugins []string) []string {
	slim := slices.DeleteFunc(slices.Clone(stock), func(d string) bool {
		return !slices.Contains(plugins, d)
	})
	if len(slim) != len(plugins) {
		// A plugin whose name is not a stock directive would never run: fail at start.
		panic(fmt.Sprintf("coredns: plugins %v are not all in CoreDNS's directives %v", plugins, stock))
	}
	return slim
}

func init() {
	dnsserver.Directives = slimDirectives(dnsserver.Directives, compiledIn())
}

func main() {
	coremain.Run()
}
