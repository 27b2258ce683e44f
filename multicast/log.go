package multicast

import (
	"cmp"
	"fmt"
	"log/slog"
)

// discard is the logger of a session given none.
var discard = slog.New(slog.DiscardHandler)

// orDiscard is l, or discard when l is nil.
func orDiscard(l *slog.Logger) *slog.Logger { return cmp.Or(l, discard) }

// sessionID is a session id as records name it: 8 hex digits, as errors
// and reports print it. The digits are made only when a record is written.
type sessionID uint32

func (s sessionID) LogValue() slog.Value { return slog.StringValue(fmt.Sprintf("%08x", uint32(s))) }

// sessionAttr names session in a record.
func sessionAttr(session uint32) slog.Attr { return slog.Any("session", sessionID(session)) }
