// Package deploy is the sender's orchestration of a release: distribute
// the image to every host (package multicast), make sure each host staged
// it, then switch them all with one signed ACTIVATE, and report per host.
//
// A Deployer is one group's deploys from the sender's state directory,
// holding the group's lock (flock, with the holder's pid inside) from Open
// to Close; StatePaths names its files:
//
//	deploy-G.lock        one deploy or rollback of group G (ADDR_PORT) at a time
//	images/G/<id>.img    images built for G (Build), with .manifest, .layout, .pack;
//	                     the KeepBuilds newest and the base are kept
//	last-build-G         the image the hosts hold: the next build is laid out on it
//	pointer-G.json       the last fleet pointer issued, certs-G.json its host certificates
//	audit.log            one JSON line per deploy and rollback (AuditEntry)
//
// Deployer.Deploy takes its connections (Conns: the data conn, the control
// conn and where commands go, the unicast path's listener), so the whole
// flow runs over the in-process network of internal/memnet in tests; Dial
// opens the real sockets. Options embed multicast.SendOptions, whose
// fields the transfer and the commands share; its Logger hears the deploy
// too (its own lines at Info, what the operator must see at Warn, the
// session's and the commands' detail at Debug). The Result keeps each fact
// once: the host lines sorted by id, the transfer's report (bytes and
// chunks are read from it), and the outcome read from the hosts' phases;
// its JSON is what `sender deploy --json` prints.
//
// Releases are named by image.ID throughout (Result.ReleaseID, host
// lines, the audit log, the fleet pointer record, a rollback's target);
// JSON writes an id as its 16 hex digits, and no release as "" or not at
// all, as each field did before ids were typed.
//
// Two phases: nothing is switched until the staging phase is over, and
// then only if the policy (--require) is met; the switch goes to every
// staged host together, or by health-gated waves (Rollout). Commands are
// signed with the release key and carry a nonce and time (package
// control); the Commander multicasts a command to the agents' control port
// and retransmits the same bytes to the hosts that have not answered, so
// an agent never applies it twice. A deploy that switched a host records
// its image as the group's base; every deploy started appends its audit
// line (Deployer.Fail for one whose sockets did not open).
//
// A deploy that switched hosts, and a rollback, end with a signed fleet
// pointer (Publish) and, for every host whose key the sender pins, a host
// certificate (IssueCerts): hosts that missed the deploy catch up from
// their peers with them. Fleet asks a group's agents for their status and
// rolls them back (Deployer.Rollback holds the lock and writes the audit
// line). Serve (`sender serve`) is the fleet's source of last resort when
// no peer holds the release.
//
// The sender side must not link the receiver's: this package imports
// neither agent, release nor loopmount.
package deploy
