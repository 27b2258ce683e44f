// Package release is the receiver's store of releases: verified images,
// their read-only loop mounts, the `current` symlink, and a state file.
//
// Releases are named by image.ID; the store makes file names only from an
// id's 16 hex digits, so no name from the network reaches a path. Layout
// under the root (default /srv/loopcast):
//
//	images/<id>.img       verified images, kept for retention
//	images/<id>.manifest  their manifests
//	releases/<id>/        read-only loop mounts of the images
//	slots/<a..>/          with a ScriptCache: binds of releases, see slots.go
//	current -> slots/<name>, or releases/<id> for a release in no slot
//	opcache/              the agent's OPcache helper for php-fpm
//	state                 JSON: staged, current, previous, failed, history, slots
//	                      (ids as their digits; no current or previous: left out)
//	lock                  flock(2) serialising the agent and local commands
//
// Stage verifies an image against its manifest, adopts it into images/ and
// mounts it; only a staged release can become current. Activate and
// Rollback flip `current` atomically (a new symlink renamed over it, the
// directory fsynced) and never remount a release that is still mounted.
// Releases are ordered by when they were first staged; Activate refuses one
// older than current, which only Rollback may name.
//
// Retention keeps current, the rollback target, the last Keep activated
// releases and every release that stopped being current less than KeepFor
// ago. It never retires a release a process still uses (working directory,
// root, executable, open file or memory map in its mount, read from /proc;
// and the unmount is never lazy, so a script is never stranded in a
// detached tree): such a release stays mounted, `receiver status` names its
// users, and Retire, which the agent runs every minute, retires it once
// they are gone. When the disk needs room for a new release, MakeRoom
// retires releases kept only by KeepFor (with a warning), never one in use:
// then the new release is refused with an error naming the users. A Lease
// (`receiver exec`) holds the current release for a command until it exits.
// Reconcile, run at boot, remounts kept images (all within KeepFor too) and
// repairs `current`.
//
// With Options.Cache (the agent's --php-fpm), a staged release is also
// bound in a slot of a small ring, so files a deploy leaves alone keep
// their real path and OPcache keeps their compiled scripts; the slot's
// changed files are dropped from OPcache before it serves anything (see
// slots.go). A slot a process or a php-fpm request uses is never taken.
//
// Every change runs under the lock and ends by writing the state file
// atomically; `current` on disk is the truth about what is served, and
// Reconcile brings the state file back in line with it after a crash.
package release
