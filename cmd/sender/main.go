// Command sender is the release engineer's side of loopcast: it makes keys,
// builds and inspects images, and ships them to the fleet.
package main

import (
	"github.com/loopcast/loopcast/internal/cliutil"
	"github.com/urfave/cli/v2"
)

func main() { cliutil.Main(newApp()) }

func newApp() *cli.App {
	return &cli.App{
		Name:    "sender",
		Usage:   "build, sign and multicast release images to a fleet",
		Version: version,
		Commands: []*cli.Command{
			cliutil.ManCommand(),
			keygenCommand(),
			buildCommand(),
			inspectCommand(),
			sendCommand(),
			deployCommand(),
			statusCommand(),
			rollbackCommand(),
			verifyCommand(),
			doctorCommand(),
			serveCommand(),
		},
		HideHelpCommand: true,
		ExitErrHandler:  func(*cli.Context, error) {}, // main prints and exits
	}
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"
