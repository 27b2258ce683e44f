// Package agent is the receiver's long-running side, `receiver run`: its
// startup sequence — reconcile the release store, then tell systemd it is
// ready — and the loop that receives images and obeys control commands.
// Its Handler joins the control protocol (package control) to the release
// store (package release): it applies verified commands and signs every
// reply with the host key.
//
// The unit file (packaging/loopcast-receiver.service) is Type=notify and
// ordered before nginx and php-fpm, so the web server starts only once
// Start has remounted the kept releases and repaired `current`: it never
// serves an empty root after a reboot.
package agent
