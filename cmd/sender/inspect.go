package main

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/loopcast/loopcast/internal/cliutil"

	"github.com/loopcast/loopcast/image"
	"github.com/urfave/cli/v2"
)

func inspectCommand() *cli.Command {
	return &cli.Command{
		Name:      "inspect",
		Usage:     "print a manifest readably",
		ArgsUsage: "IMAGE.manifest",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "json", Usage: "print JSON, with every chunk"},
			&cli.StringSliceFlag{Name: "trust", Usage: "verify the signature against this public key `FILE` (repeatable)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return fmt.Errorf("inspect: want one manifest file, got %d arguments", c.NArg())
			}
			m, err := image.ReadManifestFile(c.Args().First())
			if err != nil {
				return err
			}
			var verr error
			if keys := c.StringSlice("trust"); len(keys) > 0 {
				trusted, err := image.ReadTrustedKeys(keys)
				if err != nil {
					return err
				}
				verr = m.Verify(trusted)
			}
			if c.Bool("json") {
				err = printManifestJSON(c.App.Writer, m)
			} else {
				printManifest(c.App.Writer, m)
			}
			if err != nil {
				return err
			}
			if verr != nil {
				return fmt.Errorf("%s: %w", c.Args().First(), verr)
			}
			return nil
		},
	}
}

type manifestJSON struct {
	ReleaseID   image.ID    `json:"release_id"`
	Version     int         `json:"version"`
	ImageSize   int64       `json:"image_size"`
	ChunkSize   uint32      `json:"chunk_size"`
	ImageDigest string      `json:"image_digest"`
	FileCount   uint64      `json:"file_count"`
	Created     time.Time   `json:"created"`
	Label       string      `json:"label"`
	KeyID       string      `json:"key_id,omitempty"`
	Chunks      []chunkJSON `json:"chunks"`
}

type chunkJSON struct {
	Hash string `json:"sha256"`
	Zero bool   `json:"zero,omitempty"`
}

func printManifestJSON(w io.Writer, m *image.Manifest) error {
	j := manifestJSON{
		ReleaseID: m.ID(), Version: image.ManifestVersion,
		ImageSize: m.ImageSize, ChunkSize: m.ChunkSize,
		ImageDigest: hex.EncodeToString(m.ImageDigest[:]), FileCount: m.FileCount,
		Created: time.Unix(m.Created, 0).UTC(), Label: m.Label,
	}
	if m.PublicKey != nil {
		j.KeyID = image.KeyID(m.PublicKey)
	}
	for _, c := range m.Chunks {
		j.Chunks = append(j.Chunks, chunkJSON{Hash: hex.EncodeToString(c.Hash[:]), Zero: c.Zero})
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(j)
}

func printManifest(w io.Writer, m *image.Manifest) {
	zero := 0
	for _, c := range m.Chunks {
		if c.Zero {
			zero++
		}
	}
	signed := "unsigned"
	if m.PublicKey != nil {
		signed = "ed25519, key " + image.KeyID(m.PublicKey)
	}
	fmt.Fprintf(w, "release     %s\n", m.ID())
	fmt.Fprintf(w, "version     %d\n", image.ManifestVersion)
	fmt.Fprintf(w, "image size  %d bytes (%s)\n", m.ImageSize, cliutil.HumanBytes(m.ImageSize))
	fmt.Fprintf(w, "chunks      %d × %s (%d all-zero, not sent)\n", len(m.Chunks), cliutil.HumanBytes(int64(m.ChunkSize)), zero)
	fmt.Fprintf(w, "digest      %x (over the chunk SHA-256s)\n", m.ImageDigest)
	fmt.Fprintf(w, "files       %d\n", m.FileCount)
	fmt.Fprintf(w, "created     %s\n", time.Unix(m.Created, 0).UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "label       %s\n", m.Label)
	fmt.Fprintf(w, "signature   %s\n", signed)
}
