package deploy

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/loopcast/loopcast/image"
)

// KeepBuilds is how many built images stay in a group's images folder
// besides the base: the newest is the next build's base once deployed;
// older ones are rollback material on the hosts already, not here.
const KeepBuilds = 2

// Built is an image built for a deploy.
type Built struct {
	*image.Result
	ID   image.ID // the release built (its manifest's id, hashed once)
	Path string   // images/G/<release>.img, with its manifest, layout and pack beside it
	// BaseImage is the build's base: the last image deployed to the group,
	// whose layout it kept (Base says how, or why not) and whose chunks
	// and pack it took; "" when the group has none.
	BaseImage string
	Time      time.Duration // how long the build took
	Removed   []string      // older builds it pruned
}

// Build builds src into the group's images folder, on the layout of the
// last image deployed to the group (opts.Base is set to it), so unchanged
// files keep their blocks and the hosts reuse the chunks they hold; then
// it prunes older builds, keeping the KeepBuilds newest and the base.
func (d *Deployer) Build(ctx context.Context, src string, opts image.Options) (*Built, error) {
	if err := os.MkdirAll(d.Images, 0o755); err != nil {
		return nil, fmt.Errorf("deploy: %w", err)
	}
	b := &Built{BaseImage: d.base()}
	opts.Base, opts.BaseOptional = b.BaseImage, true
	out := filepath.Join(d.Images, "build.img")
	start := time.Now()
	res, err := image.Build(ctx, src, out, opts)
	if err != nil {
		return nil, err
	}
	b.Result, b.ID = res, res.Manifest.ID()
	b.Path = filepath.Join(d.Images, b.ID.String()+".img")
	for _, suffix := range []string{".manifest", image.LayoutSuffix, image.PackSuffix, ""} {
		if err := os.Rename(out+suffix, b.Path+suffix); err != nil {
			return nil, fmt.Errorf("deploy: %w", err)
		}
	}
	b.Time = time.Since(start)
	b.Removed = pruneBuilds(d.Images, []string{b.Path, b.BaseImage})
	return b, nil
}

// base returns the image recorded as the group's base if it still
// exists; a layout gone or unreadable is Build's to handle (BaseOptional:
// laid out afresh, the image's chunks still taken).
func (d *Deployer) base() string {
	b, err := os.ReadFile(d.LastBuild)
	if err != nil {
		return ""
	}
	img := strings.TrimSpace(string(b))
	if _, err := os.Stat(img); err != nil {
		return "" // gone: nothing to build on
	}
	return img
}

// pruneBuilds removes all but the KeepBuilds newest images (and their
// manifests, layouts and packs) in dir; those in keep are never removed.
// It returns the images it removed.
func pruneBuilds(dir string, keep []string) []string {
	imgs, _ := filepath.Glob(filepath.Join(dir, "*.img"))
	type built struct {
		path string
		mod  time.Time
	}
	var all []built
	for _, p := range imgs {
		if fi, err := os.Stat(p); err == nil && !slices.Contains(keep, p) {
			all = append(all, built{p, fi.ModTime()})
		}
	}
	slices.SortFunc(all, func(a, b built) int { return b.mod.Compare(a.mod) })
	var removed []string
	for i, b := range all {
		if i < KeepBuilds-1 {
			continue
		}
		for _, suffix := range []string{"", ".manifest", image.LayoutSuffix, image.PackSuffix} {
			os.Remove(b.path + suffix)
		}
		removed = append(removed, b.path)
	}
	return removed
}
