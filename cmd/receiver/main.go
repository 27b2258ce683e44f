// Command receiver is the loopcast agent on each web server: it receives
// images, stages them as read-only loop mounts and switches `current`.
package main

import (
	"os"
	"runtime/debug"

	"github.com/loopcast/loopcast/internal/cliutil"
	"github.com/loopcast/loopcast/multicast"
	"github.com/urfave/cli/v2"
)

func main() {
	if os.Getenv("GOMEMLIMIT") == "" { // the operator's setting wins
		debug.SetMemoryLimit(multicast.ReceiverMemoryLimit)
	}
	cliutil.Main(newApp())
}

func newApp() *cli.App {
	return &cli.App{
		Name:            "receiver",
		Usage:           "the loopcast agent: receive, stage and switch releases",
		Version:         version,
		Commands:        []*cli.Command{runCommand(), keygenCommand(), statusCommand(), rollbackCommand(), verifyCommand(), execCommand(), fetchCommand(), doctorCommand(), cliutil.ManCommand()},
		HideHelpCommand: true,
		ExitErrHandler:  func(*cli.Context, error) {},
	}
}
