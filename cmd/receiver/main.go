// Command receiver is the loopcast agent on each web server: it receives
// images, stages them as read-only loop mounts and switches `current`.
package main

import (
	"github.com/loopcast/loopcast/internal/cliutil"
	"github.com/urfave/cli/v2"
)

func main() { cliutil.Main(newApp()) }

func newApp() *cli.App {
	return &cli.App{
		Name:            "receiver",
		Usage:           "the loopcast agent: receive, stage and switch releases",
		Commands:        []*cli.Command{runCommand(), keygenCommand(), statusCommand(), rollbackCommand(), verifyCommand(), execCommand(), fetchCommand()},
		HideHelpCommand: true,
		ExitErrHandler:  func(*cli.Context, error) {},
	}
}
