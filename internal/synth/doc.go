// Package synth generates synthetic web code trees for tests and benchmarks:
// a deterministic stand-in for the ~150,000-file PHP tree loopcast deploys.
//
// The same Options (seed included) give the same tree byte for byte: names,
// contents, sizes, modes, symlink targets, hard links and mtimes. Nothing
// comes from the clock or an unseeded random source; each file's content is
// drawn from its own generator seeded by (seed, file number), so files can be
// written in parallel without changing the result.
//
// A tree looks like a PHP application with its vendor directory:
//
//	app/Http/Controllers/...        PHP classes (most files, 1–20 KB)
//	vendor/<vendor>/<pkg>/src/...   deep layout, directories up to maxDepth
//	public/assets/img/              one flat directory with thousands of images
//	resources/views/emails/         another large flat directory
//	bin/console, vendor/bin/*       executables; bin/suid-helper is setuid
//	storage/tmp (sticky), storage/shared (setgid)
//
// plus a long tail of MiB-sized files, incompressible binary assets (random
// bytes behind an image or font signature), empty .gitkeep files, symlinks
// with targets on both sides of ext2's 60-byte fast-symlink limit, and hard
// links.
//
// ApplyChanges edits an existing tree by a deterministic change set (modify,
// add, delete files spread over the tree) for delta-deploy tests.
package synth
