package multicast

import (
	"context"
	"encoding/binary"
	"net"
	"slices"
	"testing"
)

// deafTo drops every multicast packet (a sequence number) the sender
// sends to the named hosts, as a firewall dropping the group would: their
// unicast (sequence 0) still arrives.
func deafTo(hosts ...string) func(from, to string, b []byte) bool {
	return func(from, to string, b []byte) bool {
		return from == "sender" && slices.Contains(hosts, to) && len(b) >= HeaderLen && binary.BigEndian.Uint32(b[12:16]) != 0
	}
}

// withUnicast gives the session a TCP fetch port on loopback and the
// hosts' unicast addresses, and makes every receiver dial that port.
func withUnicast(t *testing.T, ts *testSession, hosts []string) func(string, *ReceiveOptions) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ts.send.Unicast = ln
	ts.send.HostAddrs = map[string]net.Addr{}
	for _, h := range hosts {
		ts.send.HostAddrs[h] = memAddr(h)
	}
	return func(_ string, o *ReceiveOptions) {
		o.dial = func(ctx context.Context, _ net.Addr, port uint16) (net.Conn, error) {
			if int(port) != ln.Addr().(*net.TCPAddr).Port {
				t.Errorf("dialing port %d, the listener is %v", port, ln.Addr())
			}
			var d net.Dialer
			return d.DialContext(ctx, "tcp4", ln.Addr().String())
		}
	}
}

// checkPaths asserts every host completed, the deaf ones over the unicast
// path (and only they), and that their connections carried the data.
func checkPaths(t *testing.T, ts *testSession, res map[string]*Result, errs map[string]error, hosts, deaf []string) {
	t.Helper()
	for _, h := range hosts {
		if errs[h] != nil {
			t.Fatalf("%s: %v", h, errs[h])
		}
		ts.checkImage(h)
		if want := slices.Contains(deaf, h); res[h].Unicast != want {
			t.Errorf("%s: received over unicast %v, want %v", h, res[h].Unicast, want)
		}
	}
	if done, all := ts.report.Completed(); done != len(hosts) || all != len(hosts) {
		t.Fatalf("report: %d of %d complete: %+v", done, all, ts.report.Hosts)
	}
	for _, hr := range ts.report.Hosts {
		wantPath := PathMulticast
		if slices.Contains(deaf, hr.ID) {
			wantPath = PathUnicast
		}
		if hr.Path != wantPath {
			t.Errorf("%s: path %q, want %q", hr.ID, hr.Path, wantPath)
		}
		if hr.Path == PathUnicast && hr.UnicastBytes == 0 {
			t.Errorf("%s: the unicast path carried nothing", hr.ID)
		}
		if hr.Path == PathMulticast && hr.UnicastBytes != 0 {
			t.Errorf("%s: %d unicast bytes on the multicast path", hr.ID, hr.UnicastBytes)
		}
	}
}

// A host that hears no multicast is announced to by unicast, takes the
// session over the sender's TCP port, and completes with the others,
// which the multicast session serves as before.
func TestUnicastFallback(t *testing.T) {
	hosts, deaf := []string{"h1", "h2", "deaf"}, []string{"deaf"}
	ts := newTestSession(t, deafTo(deaf...))
	ts.send.Hosts = hosts
	res, errs := ts.run(context.Background(), hosts, withUnicast(t, ts, hosts))
	checkPaths(t, ts, res, errs, hosts, deaf)
	if ts.report.UnicastBytes < ts.report.PayloadBytes {
		t.Errorf("unicast carried %d bytes, less than the %d of payload the deaf host lacked", ts.report.UnicastBytes, ts.report.PayloadBytes)
	}
}

// Without the host's address nothing can reach it: it is reported as
// never registered, and the others complete.
func TestUnicastNeedsAddress(t *testing.T) {
	hosts := []string{"h1", "deaf"}
	ts := newTestSession(t, deafTo("deaf"))
	ts.send.Hosts = hosts
	recv := withUnicast(t, ts, hosts)
	delete(ts.send.HostAddrs, "deaf")
	ts.send.Wait = 2e9
	res, errs := ts.run(context.Background(), hosts, func(h string, o *ReceiveOptions) {
		recv(h, o)
		if h == "deaf" {
			o.AnnounceTimeout = 3e9
		}
	})
	if errs["h1"] != nil || res["h1"].Unicast {
		t.Fatalf("h1: %v (unicast %v)", errs["h1"], res["h1"] != nil && res["h1"].Unicast)
	}
	if errs["deaf"] == nil {
		t.Fatal("deaf host received a session nothing could reach it with")
	}
	for _, hr := range ts.report.Hosts {
		if hr.ID == "deaf" && hr.State != HostMissing {
			t.Errorf("deaf: %v, want missing", hr.State)
		}
	}
}

// Every host deaf: the multicast group has no one left after the first
// pass, so the session runs no repair rounds and ends when the streams do.
func TestUnicastOnly(t *testing.T) {
	hosts := []string{"d1", "d2"}
	ts := newTestSession(t, deafTo(hosts...))
	ts.send.Hosts = hosts
	res, errs := ts.run(context.Background(), hosts, withUnicast(t, ts, hosts))
	checkPaths(t, ts, res, errs, hosts, hosts)
	if ts.report.Rounds != 0 {
		t.Errorf("%d repair rounds with no multicast host", ts.report.Rounds)
	}
}

// A deaf host holding the base gets deltas over its stream; one whose base
// is corrupt asks again for the chunks that fail and gets them plain; an
// encrypted session's frames stay sealed on the stream too.
func TestUnicastDeltaAndSealed(t *testing.T) {
	for _, tc := range []struct {
		name    string
		corrupt bool
		encrypt bool
	}{{"delta", false, false}, {"corrupt base", true, false}, {"sealed", false, true}} {
		t.Run(tc.name, func(t *testing.T) {
			hosts, deaf := []string{"d1", "deaf"}, []string{"deaf"}
			ts, base, basePath := deltaSession(t, true)
			ts.net.drop = deafTo(deaf...)
			ts.send.Hosts, ts.send.Encrypt = hosts, tc.encrypt
			uni := withUnicast(t, ts, hosts)
			res, errs := ts.run(context.Background(), hosts, func(h string, o *ReceiveOptions) {
				uni(h, o)
				var corrupt func([]byte)
				if tc.corrupt && h == "deaf" {
					corrupt = func(b []byte) { // every changed chunk's base bytes
						for _, i := range deltaChanged {
							b[i*testChunk+100] ^= 0xff
						}
					}
				}
				hostBase(t, ts, base, basePath, h, o, corrupt)
			})
			checkPaths(t, ts, res, errs, hosts, deaf)
			r := res["deaf"]
			if tc.corrupt && r.BadChunks == 0 {
				t.Error("deaf host's corrupt base: no chunk failed its check")
			}
			if tc.encrypt && !r.Encrypted {
				t.Error("sealed session: the deaf host's result is not encrypted")
			}
			for _, hr := range ts.report.Hosts {
				// the changed chunks as deltas are a few KiB; plain they are
				// the whole chunks (testChunk each)
				if hr.ID == "deaf" && !tc.corrupt && hr.UnicastBytes > int64(len(deltaChanged))*testChunk/2 {
					t.Errorf("deaf host: %d bytes over unicast for %d changed chunks: not deltas", hr.UnicastBytes, len(deltaChanged))
				}
			}
		})
	}
}

// A receiver told not to take the unicast path waits on multicast.
func TestNoUnicastOption(t *testing.T) {
	hosts := []string{"h1", "deaf"}
	ts := newTestSession(t, deafTo("deaf"))
	ts.send.Hosts, ts.send.Wait = hosts, 2e9
	uni := withUnicast(t, ts, hosts)
	_, errs := ts.run(context.Background(), hosts, func(h string, o *ReceiveOptions) {
		uni(h, o)
		if h == "deaf" {
			o.NoUnicast, o.AnnounceTimeout = true, 3e9
		}
	})
	if errs["h1"] != nil {
		t.Fatal(errs["h1"])
	}
	if errs["deaf"] == nil {
		t.Fatal("a receiver with NoUnicast took a session it hears no multicast of")
	}
}
