// Command synthtree writes a deterministic synthetic web code tree (see
// package internal/synth), or applies a deterministic change set to one.
//
//	synthtree --preset full --seed 1 --out /var/tmp/tree
//	synthtree --out /var/tmp/tree --modify 100 --add 20 --delete 10 --seed 2
//	synthtree --php-app 2000 --label v2 --out /var/tmp/app
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/loopcast/loopcast/internal/synth"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "synthtree:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("synthtree", flag.ContinueOnError)
	seed := fs.Uint64("seed", 1, "seed: the same seed gives the same tree")
	preset := fs.String("preset", synth.PresetSmall, "tree size: small (~300 files) or full (150,000 files, ~900 MB)")
	files := fs.Int("files", 0, "number of files (overrides the preset; bytes scale with it)")
	out := fs.String("out", "", "directory to write (missing or empty), or to change")
	modify := fs.Int("modify", 0, "change set: files to modify in the existing tree at --out")
	add := fs.Int("add", 0, "change set: files to add")
	del := fs.Int("delete", 0, "change set: files to delete")
	phpApp := fs.Int("php-app", 0, "write a PHP app of this many classes and a page loading them all (public/all.php); with --label")
	label := fs.String("label", "v1", "with --php-app: the label of the app's one changing file ("+synth.PHPAppChanged+")")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || fs.NArg() > 0 {
		return fmt.Errorf("usage: synthtree [--preset small|full] [--seed N] [--files N] --out DIR")
	}
	start := time.Now()
	if *phpApp > 0 {
		if err := synth.PHPApp(*out, *phpApp, *label); err != nil {
			return err
		}
		fmt.Printf("php app of %d classes (%s) in %.1fs\n", *phpApp, *label, time.Since(start).Seconds())
		return nil
	}
	if *modify+*add+*del > 0 {
		cs, err := synth.ApplyChanges(*out, synth.ChangeSet{Seed: *seed, Modify: *modify, Add: *add, Delete: *del})
		if err != nil {
			return err
		}
		fmt.Printf("modified=%d added=%d deleted=%d in %.1fs\n", len(cs.Modified), len(cs.Added), len(cs.Deleted), time.Since(start).Seconds())
		return nil
	}
	o, err := synth.PresetOptions(*preset, *seed)
	if err != nil {
		return err
	}
	if *files > 0 {
		o.Bytes = o.Bytes * int64(*files) / int64(o.Files)
		o.Files = *files
	}
	st, err := synth.Generate(ctx, *out, o)
	if err != nil {
		return err
	}
	fmt.Printf("%v in %.1fs\n", st, time.Since(start).Seconds())
	return nil
}
