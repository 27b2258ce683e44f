package main

import (
	"crypto/ed25519"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/loopcast/loopcast/internal/cliutil"

	"github.com/loopcast/loopcast/image"
	"github.com/urfave/cli/v2"
)

func buildCommand() *cli.Command {
	return &cli.Command{
		Name:      "build",
		Usage:     "pack a directory into a deterministic ext2 image and a manifest",
		ArgsUsage: "SRC_DIR",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "out", Aliases: []string{"o"}, Required: true, Usage: "image `FILE`; the manifest goes to FILE.manifest"},
			&cli.StringFlag{Name: "key", Usage: "sign the manifest with this private key `FILE`"},
			&cli.StringFlag{Name: "epoch", Usage: "set every timestamp to Unix time `N` (default: $SOURCE_DATE_EPOCH if set, else the files' own)"},
			&cli.StringFlag{Name: "label", Usage: "source label recorded in the manifest (default: SRC_DIR)"},
			&cli.BoolFlag{Name: "keep-owner", Usage: "keep the files' uid/gid (default root:root)"},
			&cli.StringFlag{Name: "size", Usage: "fixed image `SIZE` in " + cliutil.SizeUnits + " (default: sized from the tree)"},
			&cli.IntFlag{Name: "headroom", Value: image.DefaultHeadroomPct, Usage: "free blocks and inodes to add, `PCT` of the tree's needs"},
			&cli.StringFlag{Name: "base", Usage: "previous build's image `FILE` (or its .manifest or .layout): keep its layout, read from FILE.layout, so unchanged files stay in place and few chunks change"},
		},
		Action: runBuild,
	}
}

func runBuild(c *cli.Context) error {
	if c.NArg() != 1 {
		return fmt.Errorf("build: want one source directory, got %d arguments", c.NArg())
	}
	src := c.Args().First()
	opts := image.Options{
		KeepOwner:   c.Bool("keep-owner"),
		HeadroomPct: c.Int("headroom"),
		Label:       c.String("label"),
		Base:        c.String("base"),
	}
	if opts.Label == "" {
		opts.Label = src
	}
	var err error
	if opts.Epoch, err = epochOption(c.String("epoch")); err != nil {
		return err
	}
	if s := c.String("size"); s != "" {
		if opts.Size, err = cliutil.ParseSize(s); err != nil {
			return fmt.Errorf("build: --size: %w", err)
		}
	}
	if k := c.String("key"); k != "" {
		if opts.Key, err = image.ReadPrivateKeyFile(k); err != nil {
			return err
		}
	}
	prog := newProgress(os.Stderr, "build")
	opts.Progress = prog.update
	start := time.Now()
	res, err := image.Build(c.Context, src, c.String("out"), opts)
	prog.done()
	if err != nil {
		return err
	}
	m := res.Manifest
	fmt.Fprintf(c.App.Writer, "release   %s\nimage     %s (%s, %d chunks)\nmanifest  %s.manifest (%s)\nfiles     %d\ntime      %s\n",
		m.ID(), c.String("out"), cliutil.HumanBytes(m.ImageSize), len(m.Chunks), c.String("out"),
		signedBy(opts.Key), res.Files, time.Since(start).Round(time.Millisecond))
	fmt.Fprintf(c.App.Writer, "layout    %s\n", res.Layout)
	fmt.Fprintf(c.App.Writer, "pack      %s\n", describePack(res))
	if b := res.Base; b != nil {
		fmt.Fprintf(c.App.Writer, "base      %s: %s\n", opts.Base, describeBase(b))
	}
	return nil
}

// describePack says what the build compressed.
func describePack(res *image.Result) string {
	st := res.Chunks
	d := fmt.Sprintf("%s (%s in %d chunks compressed", res.Pack, cliutil.HumanBytes(st.Plain), st.Packed)
	if st.Same > 0 || st.Deltas > 0 {
		d += fmt.Sprintf("; %d unchanged from the base, taken as they were; %d deltas, %s", st.Same, st.Deltas, cliutil.HumanBytes(st.Delta))
	}
	return d + ")"
}

// describeBase says how the build used its base layout.
func describeBase(b *image.BaseReport) string {
	if !b.Kept {
		return "not kept, fresh layout (" + b.Why + ")"
	}
	d := fmt.Sprintf("layout kept: %d inodes kept (%d files unchanged), %d new, %d freed", b.Reused, b.Unchanged, b.New, b.Freed)
	if b.Cloned {
		d += fmt.Sprintf("; started from a copy of the base image: %d files taken unread, %s of source read", b.Trusted, cliutil.HumanBytes(b.Read))
	}
	return d
}

func signedBy(k ed25519.PrivateKey) string {
	if k == nil {
		return "unsigned"
	}
	return "signed, key " + image.KeyID(k.Public().(ed25519.PublicKey))
}

// epochOption reads --epoch, falling back to SOURCE_DATE_EPOCH.
func epochOption(flag string) (*int64, error) {
	src := "--epoch"
	if flag == "" {
		flag, src = os.Getenv("SOURCE_DATE_EPOCH"), "SOURCE_DATE_EPOCH"
	}
	if flag == "" {
		return nil, nil
	}
	n, err := strconv.ParseInt(flag, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("build: %s=%q is not a Unix time", src, flag)
	}
	return &n, nil
}
