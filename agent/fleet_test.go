package agent

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loopcast/loopcast/control"
	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/internal/testid"
	"github.com/loopcast/loopcast/release"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func signedPointer(t *testing.T, key ed25519.PrivateKey, group string, seq uint64, rel image.ID, issued time.Time) []byte {
	return signedPointerKind(t, key, group, seq, rel, issued, false)
}

func signedPointerKind(t *testing.T, key ed25519.PrivateKey, group string, seq uint64, rel image.ID, issued time.Time, rollback bool) []byte {
	t.Helper()
	b, err := control.SignPointer(&control.Pointer{Seq: seq, Issued: issued.UnixMilli(), Group: group, Release: rel, Hosts: 3, Rollback: rollback}, key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestFleetPointer: only a newer pointer, signed by a trusted key for this
// group, is taken; it survives a restart, and a replay of an older one
// after the restart changes nothing.
func TestFleetPointer(t *testing.T) {
	root := t.TempDir()
	_, stranger, _ := ed25519.GenerateKey(nil)
	f, err := LoadFleet(root, []ed25519.PublicKey{trustedPub}, "web", quiet)
	if err != nil {
		t.Fatal(err)
	}
	old := signedPointer(t, goldenKey, "web", 10, testid.Parse("aaaaaaaaaaaaaaaa"), t0)
	newer := signedPointer(t, goldenKey, "web", 11, testid.Parse("bbbbbbbbbbbbbbbb"), t0.Add(time.Minute))
	if ok, err := f.Offer(signedPointer(t, stranger, "web", 99, testid.Parse("cccccccccccccccc"), t0), "x"); ok || err == nil {
		t.Errorf("untrusted pointer taken: %v %v", ok, err)
	}
	if ok, err := f.Offer(signedPointer(t, goldenKey, "other", 99, testid.Parse("cccccccccccccccc"), t0), "x"); ok || err == nil {
		t.Errorf("other group's pointer taken: %v %v", ok, err)
	}
	if ok, err := f.Offer(old, "x"); !ok || err != nil {
		t.Fatalf("first pointer: %v %v", ok, err)
	}
	if ok, err := f.Offer(newer, "x"); !ok || err != nil {
		t.Fatalf("newer pointer: %v %v", ok, err)
	}
	if ok, _ := f.Offer(newer, "x"); ok {
		t.Error("the same pointer taken twice")
	}
	f2, err := LoadFleet(root, []ed25519.PublicKey{trustedPub}, "web", quiet)
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := f2.Pointer(); p == nil || p.Seq != 11 {
		t.Fatalf("after a restart: pointer %v, want #11", p)
	}
	if ok, _ := f2.Offer(old, "replay"); ok {
		t.Error("a replayed older pointer was taken after a restart")
	}
	if p, _ := f2.Pointer(); p.Release != testid.Parse("bbbbbbbbbbbbbbbb") {
		t.Errorf("pointer names %s after the replay", p.Release)
	}

	// how a host stands against it
	now := time.Now()
	if s := f2.Sync(testid.Parse("bbbbbbbbbbbbbbbb"), now); !s.InSync {
		t.Errorf("on the pointer's release: %+v", s)
	}
	if s := f2.Sync(testid.Parse("aaaaaaaaaaaaaaaa"), now); s.InSync || s.Behind <= 0 {
		t.Errorf("off the pointer's release: %+v, want behind", s)
	}
	f2.NoteCommand(t0.Add(2 * time.Minute)) // a deploy or rollback after the pointer
	if s := f2.Sync(testid.Parse("aaaaaaaaaaaaaaaa"), now); !s.InSync || !s.Superseded {
		t.Errorf("after a newer command: %+v, want in sync, superseded", s)
	}
	p, _ := f2.Pointer()
	if !f2.superseded(p) {
		t.Error("pointer not superseded by a newer command")
	}

	// a local rollback supersedes it too (a fresh record without commands)
	root3 := t.TempDir()
	f3, _ := LoadFleet(root3, []ed25519.PublicKey{trustedPub}, "web", quiet)
	f3.Offer(signedPointer(t, goldenKey, "web", 5, testid.Parse("bbbbbbbbbbbbbbbb"), time.Now().Add(-time.Minute)), "x")
	p3, _ := f3.Pointer()
	if f3.superseded(p3) {
		t.Fatal("superseded with no command")
	}
	if err := NoteLocalCommand(root3); err != nil {
		t.Fatal(err)
	}
	if !f3.superseded(p3) {
		t.Error("a local rollback while the pointer was held does not supersede it")
	}
	// a newer pointer (a later deploy or rollback) is acted on again
	f3.Offer(signedPointer(t, goldenKey, "web", 6, testid.Parse("cccccccccccccccc"), time.Now().Add(-time.Hour)), "x")
	if p, _ := f3.Pointer(); f3.superseded(p) {
		t.Error("a pointer newer than the local rollback is superseded (by the host's clock?)")
	}
	// the sender's `sender serve` is used only when no peer serves
	f2.notePeer("10.0.0.1", testid.Parse("bbbbbbbbbbbbbbbb"), true, now)
	if got := f2.peersServing(testid.Parse("bbbbbbbbbbbbbbbb"), now); len(got) != 1 || got[0] != "10.0.0.1" {
		t.Errorf("only the last resort serves: %v", got)
	}
	f2.notePeer("10.0.0.2", testid.Parse("bbbbbbbbbbbbbbbb"), false, now)
	f2.notePeer("10.0.0.3", image.ID{}, false, now) // holds the pointer, not the release
	if got := f2.peersServing(testid.Parse("bbbbbbbbbbbbbbbb"), now); len(got) != 1 || got[0] != "10.0.0.2" {
		t.Errorf("a peer serves: %v, want it alone", got)
	}
	if got := f2.peersServing(testid.Parse("bbbbbbbbbbbbbbbb"), now.Add(peerMaxAge)); len(got) != 0 {
		t.Errorf("stale answers still count: %v", got)
	}
	// receiver status reads the record beside the agent
	if s, err := ReadSync(root, testid.Parse("aaaaaaaaaaaaaaaa"), now); err != nil || s.Seq != 11 || !s.Superseded {
		t.Errorf("ReadSync: %+v %v", s, err)
	}
}

// TestHealthEndpoint: unhealthy while the host lags the pointer (healthy
// within ?lag), healthy once it serves the pointer's release.
func TestHealthEndpoint(t *testing.T) {
	a := newAgent(t)
	a.needLoop()
	relA, relB := a.stage("A"), a.stage("B")
	if err := a.store.Activate(relA); err != nil {
		t.Fatal(err)
	}
	f, _ := LoadFleet(a.store.Root(), []ed25519.PublicKey{trustedPub}, "web", quiet)
	h := healthHandler(a.store, f)
	get := func(q string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz"+q, nil))
		return rec.Code, rec.Body.String()
	}
	if code, body := get(""); code != http.StatusOK || !strings.Contains(body, "no fleet pointer") {
		t.Errorf("no pointer, serving A: %d %q", code, body)
	}
	f.Offer(signedPointer(t, goldenKey, "web", 2, relB, time.Now()), "x")
	if code, body := get(""); code != http.StatusServiceUnavailable || !strings.Contains(body, "behind") {
		t.Errorf("lagging: %d %q, want 503 behind", code, body)
	}
	if code, _ := get("?lag=3600"); code != http.StatusOK {
		t.Errorf("lagging within ?lag=3600: %d, want 200", code)
	}
	if code, _ := get("?lag=x"); code != http.StatusBadRequest {
		t.Errorf("?lag=x: %d, want 400", code)
	}
	if err := a.store.Activate(relB); err != nil {
		t.Fatal(err)
	}
	if code, body := get(""); code != http.StatusOK || !strings.Contains(body, "the fleet's release") {
		t.Errorf("in sync: %d %q", code, body)
	}
}

// TestCatchUpFromStore: a host that holds the pointer's release switches to
// it (a newer pointer to an older release is a rollback); a command issued
// after the pointer wins; a release it cannot get is retried, not given up.
func TestCatchUpFromStore(t *testing.T) {
	a := newAgent(t)
	a.needLoop()
	relA, relB := a.stage("A"), a.stage("B")
	f, _ := LoadFleet(a.store.Root(), []ed25519.PublicKey{trustedPub}, "web", quiet)
	a.h.fleet = f
	cu := &catchUp{fleet: f, store: a.store, log: quiet}
	ctx := context.Background()

	// ACTIVATE A by command, then a pointer to B issued later
	if r, err := a.send(&control.Activate{Envelope: cmdEnv(), Release: relA}, goldenKey); err != nil || r.Outcome != control.OutcomeOK {
		t.Fatalf("ACTIVATE A: %+v %v", r, err)
	}
	f.Offer(signedPointer(t, goldenKey, "web", 1, relB, a.now.Add(time.Second)), "x")
	if res := cu.attempt(ctx); res != upToDate || a.served() != relB {
		t.Fatalf("catch-up: result %v, serving %s, want B", res, a.served())
	}
	// a newer deploy pointer naming A, older than current, does not take
	// the host back; a rollback's does
	f.Offer(signedPointer(t, goldenKey, "web", 2, relA, a.now.Add(2*time.Second)), "x")
	if res := cu.attempt(ctx); res != upToDate || a.served() != relB {
		t.Fatalf("deploy pointer to the older A: result %v, serving %s, want B still", res, a.served())
	}
	f.Offer(signedPointerKind(t, goldenKey, "web", 3, relA, a.now.Add(3*time.Second), true), "x")
	if res := cu.attempt(ctx); res != upToDate || a.served() != relA {
		t.Fatalf("rollback pointer back to A: result %v, serving %s", res, a.served())
	}
	// a command after the pointer wins: ACTIVATE B issued after pointer #3
	a.now = a.now.Add(5 * time.Second)
	if r, err := a.send(&control.Activate{Envelope: cmdEnv(), Release: relB}, goldenKey); err != nil || r.Outcome != control.OutcomeOK {
		t.Fatalf("ACTIVATE B: %+v %v", r, err)
	}
	if res := cu.attempt(ctx); res != upToDate || a.served() != relB {
		t.Errorf("a pointer older than the last command was acted on: serving %s", a.served())
	}
	// a release neither held nor served by any peer: tried again later
	f.Offer(signedPointer(t, goldenKey, "web", 4, testid.Parse("0123456789abcdef"), a.now.Add(time.Second)), "x")
	if res := cu.attempt(ctx); res != tryAgain || a.served() != relB {
		t.Errorf("unknown release: result %v, serving %s; want tryAgain, B", res, a.served())
	}
	if _, err := os.Stat(filepath.Join(a.store.Root(), FleetFile)); err != nil {
		t.Errorf("no fleet record: %v", err)
	}

	// a local rollback (another process) wins over a pointer it held:
	// the guard runs under the store's lock, so even one made after
	// catch-up's first check stops the switch
	f.Offer(signedPointer(t, goldenKey, "web", 5, relA, a.now.Add(time.Minute)), "x")
	if err := NoteLocalCommand(a.store.Root()); err != nil {
		t.Fatal(err)
	}
	if res := cu.attempt(ctx); res != upToDate || a.served() != relB {
		t.Errorf("after a local rollback: result %v, serving %s, want B", res, a.served())
	}
	p5, _ := f.Pointer()
	err := a.store.ActivateGuarded(relA, func() error {
		if f.superseded(p5) {
			return errOverruled
		}
		return nil
	})
	if !errors.Is(err, errOverruled) || a.served() != relB {
		t.Errorf("guarded switch after a local rollback: %v, serving %s", err, a.served())
	}
	if st, _ := a.store.State(); st.LastError != "" && strings.Contains(st.LastError, "overruled") {
		t.Errorf("a stopped guarded switch was recorded as the store's error: %q", st.LastError)
	}

	// only releases received in the clear are served to peers
	if _, ok := cu.held.source(cu, relA); ok {
		t.Error("a release of unknown kind (staged, not received in the clear) is served to peers")
	}
	f.NoteServable(relA)
	if h, ok := cu.held.source(cu, relA); !ok || h.Manifest.ID() != relA || h.Image == "" {
		t.Errorf("a release received in the clear is not served: %+v %v", h, ok)
	}
	if _, ok := cu.held.source(cu, testid.Parse("0123456789abcdef")); ok {
		t.Error("a release not held is served")
	}
}

// TestNewerPending: a release a deploy in flight staged, built after the
// pointer's, holds catch-up back; an older staged one, or a retired one,
// does not.
func TestNewerPending(t *testing.T) {
	now := time.Now()
	a, b, c, old, gone := testid.Of("a"), testid.Of("b"), testid.Of("c"), testid.Of("old"), testid.Of("gone")
	st := &release.State{Staged: []image.ID{c, old, gone}, History: []release.Entry{
		{ID: a, Built: 100}, {ID: b, Built: 200}, {ID: c, Built: 300, StagedAt: now.Add(-time.Minute)}, {ID: old, Built: 50},
		{ID: gone, Built: 400, Retired: true},
	}}
	if got := newerPending(st, b); got != c {
		t.Errorf("pointer to b with c staged: %q, want c", got)
	}
	// staged long ago: a deploy that stopped (a halted rollout) holds nothing back
	if got := newerPendingAt(st, b, now.Add(pendingHold)); !got.IsZero() {
		t.Errorf("c staged %v ago still holds catch-up back", pendingHold)
	}
	st.Staged = []image.ID{old, gone}
	if got := newerPending(st, b); !got.IsZero() {
		t.Errorf("pointer to b with only older or retired staged: %q, want none", got)
	}
	st.Staged = []image.ID{b}
	if got := newerPending(st, b); !got.IsZero() {
		t.Errorf("the pointer's own release staged: %q, want none", got)
	}
}

// TestFleetRecordFormat: fleet.json as the agent wrote it before release
// ids were typed (the servable list as strings) still loads, and is
// written back with the same text.
func TestFleetRecordFormat(t *testing.T) {
	root := t.TempDir()
	ptr := signedPointer(t, goldenKey, "web", 7, testid.Parse("aaaaaaaaaaaaaaaa"), t0)
	old := fmt.Sprintf("{\n  \"pointer\": %q,\n  \"learned\": \"2026-11-22T05:00:00Z\",\n  \"servable\": [\n    \"aaaaaaaaaaaaaaaa\",\n    \"bbbbbbbbbbbbbbbb\"\n  ]\n}\n",
		base64.StdEncoding.EncodeToString(ptr))
	if err := os.WriteFile(filepath.Join(root, FleetFile), []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := LoadFleet(root, []ed25519.PublicKey{trustedPub}, "web", quiet)
	if err != nil {
		t.Fatal(err)
	}
	if p, _ := f.Pointer(); p == nil || p.Release != testid.Parse("aaaaaaaaaaaaaaaa") {
		t.Fatalf("pointer %v, want #7 naming aaaaaaaaaaaaaaaa", p)
	}
	if !f.servable(testid.Parse("bbbbbbbbbbbbbbbb")) || f.servable(testid.Parse("cccccccccccccccc")) {
		t.Errorf("servable list not read: %v", f.rec.Servable)
	}
	f.mu.Lock()
	f.save()
	f.mu.Unlock()
	if b, _ := os.ReadFile(filepath.Join(root, FleetFile)); string(b) != old {
		t.Errorf("written back:\n%s\nwant\n%s", b, old)
	}
}
