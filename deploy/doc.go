// Package deploy is the sender's orchestration of a release: distribute
// the image to every host (package multicast), make sure each host staged
// it, then switch them all with one signed ACTIVATE, and report per host.
//
// Two phases: nothing is switched until the staging phase is over, and
// then only if the policy (--require) is met; the switch goes to every
// staged host together. Commands are signed with the release key and
// carry a nonce and time (package control); the Commander multicasts a
// command to the agents' control port and retransmits the same bytes to
// the hosts that have not answered, so an agent never applies it twice.
//
// A deploy that switched hosts, and a rollback, end with a signed fleet
// pointer (Publish) and, for every host whose key the sender pins, a host
// certificate (IssueCerts): hosts that missed the deploy catch up from
// their peers with them. Serve (`sender serve`) is the fleet's source of
// last resort when no peer holds the release.
package deploy
