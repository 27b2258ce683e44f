// Package release is the receiver's store of releases: verified images,
// their read-only loop mounts, the `current` symlink, and a state file.
//
// Layout under the root (default /srv/loopcast):
//
//	images/<id>.img       verified images, kept for retention
//	images/<id>.manifest  their manifests
//	releases/<id>/        read-only loop mounts of the images
//	current -> releases/<id>
//	state                 JSON: staged, current, previous, failed, history
//	lock                  flock(2) serialising the agent and local commands
//
// Stage verifies an image against its manifest, adopts it into images/ and
// mounts it; only a staged release can become current. Activate and
// Rollback flip `current` atomically (a new symlink renamed over it, the
// directory fsynced) and never remount a release that is still mounted.
// Releases are ordered by when they were first staged; Activate refuses one
// older than current, which only Rollback may name. Retention keeps current,
// the rollback target and the last Keep activated releases mounted, and
// unmounts older ones lazily so processes still using them finish first.
// Reconcile, run at boot, remounts kept images and repairs `current`.
//
// Every change runs under the lock and ends by writing the state file
// atomically; `current` on disk is the truth about what is served, and
// Reconcile brings the state file back in line with it after a crash.
package release
