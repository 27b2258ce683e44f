// Package agent is the receiver's long-running side, `receiver run`: its
// startup sequence — reconcile the release store, then tell systemd it is
// ready — and the loop that receives images and obeys control commands.
// Its Handler joins the control protocol (package control) to the release
// store (package release): it applies verified commands and signs every
// reply with the host key. Both name releases by image.ID, so a command's
// release reaches the store as parsed off the wire, unchecked again.
//
// It also keeps the host with its fleet (fleet.go, catchup.go): it holds
// the newest signed fleet pointer (ROOT/fleet.json) and every host
// certificate it heard (certs.json), answers peers' POINTER? queries, and
// when the host does not serve the pointer's release it switches to it,
// from its store or fetched from peers (package peer), never against a
// command or a local rollback that came after the pointer. It serves its
// kept releases to peers that show a certificate, and /healthz on the
// metrics address says whether the host is in sync.
//
// Run with RunConfig.Relay (receiver run --relay), the agent is its
// subnet's relay: it takes each session with multicast.Relay, which joins
// it as any agent does and, when the sender grants it, runs it on the
// relay's subnet too, from a frame store beside the incoming image.
//
// The unit file (packaging/loopcast-receiver.service) is Type=notify and
// ordered before nginx and php-fpm, so the web server starts only once
// Start has remounted the kept releases and repaired `current`: it never
// serves an empty root after a reboot.
package agent
