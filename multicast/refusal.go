package multicast

import "github.com/loopcast/loopcast/multicast/internal/wire"

// RefuseCode says why a host will not take a session: the code a REFUSE
// carries (values are on the wire).
type RefuseCode = wire.RefuseCode

// Refusal codes.
const (
	RefuseOther        = wire.RefuseOther        // Detail says why
	RefuseNoSpace      = wire.RefuseNoSpace      // its disk cannot hold the image (with its reserve)
	RefuseUntrustedKey = wire.RefuseUntrustedKey // the release is not signed by a key it trusts
	RefuseVersion      = wire.RefuseVersion      // it speaks another protocol or manifest version
	RefuseBusy         = wire.RefuseBusy         // it is receiving another session
	RefuseOlder        = wire.RefuseOlder        // the release is older than its current one
)

// Refusal is an error a receiver's Accept hook (or the receiver itself)
// returns to refuse a session with a cause the sender's report can name.
type Refusal struct {
	Code   RefuseCode
	Detail string // what an operator acts on: paths, sizes, key ids
}

func (r *Refusal) Error() string { return r.Code.String() + ": " + r.Detail }

// Unwrap makes every refusal an ErrUntrusted: the session is refused.
func (r *Refusal) Unwrap() error { return ErrUntrusted }
