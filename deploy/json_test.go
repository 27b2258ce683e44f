package deploy

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/internal/testid"
)

// TestIDsInJSON: what `sender status --json` and the report print, and the
// fleet pointer record, keep the text they had with string ids (the goldens
// were printed by that code): 16 digits, "" where no release is known (a
// host's current and previous), left out where it was (a report line's
// current). A record written by that code still reads.
func TestIDsInJSON(t *testing.T) {
	a, b, c := testid.Parse("00112233aabbccdd"), testid.Parse("0011223344556677"), testid.Parse("8899aabbccddeeff")
	for _, tc := range []struct {
		v    any
		want string
	}{
		{[]HostStatus{{ID: "a", Error: "no answer"}, {ID: "b", Current: a, Previous: b, Staged: []image.ID{c}, Free: 5, Version: "v1"}},
			`[{"id":"a","current":"","previous":"","staged":null,"free_bytes":0,"agent_version":"","error":"no answer"},{"id":"b","current":"00112233aabbccdd","previous":"0011223344556677","staged":["8899aabbccddeeff"],"free_bytes":5,"agent_version":"v1"}]`},
		{PointerRecord{Seq: 5, Release: a, Issued: time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC), Pointer: []byte{1, 2}},
			`{"seq":5,"release":"00112233aabbccdd","issued":"2024-05-01T12:00:00Z","pointer":"AQI="}`},
		{[]HostResult{{ID: "a", Phase: "none"}, {ID: "b", Phase: "active", Current: a}},
			`[{"id":"a","phase":"none","needed_bytes":0},{"id":"b","phase":"active","current":"00112233aabbccdd","needed_bytes":0}]`},
	} {
		if got, err := json.Marshal(tc.v); err != nil || string(got) != tc.want {
			t.Errorf("JSON %s, %v\nwant %s", got, err, tc.want)
		}
	}
	path := filepath.Join(t.TempDir(), "pointer.json")
	if err := os.WriteFile(path, []byte(`{"seq":5,"release":"00112233aabbccdd","issued":"2024-05-01T12:00:00Z","pointer":"AQI="}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if r, err := ReadPointer(path); err != nil || r.Release != a || r.Seq != 5 {
		t.Errorf("ReadPointer of a record in the old format: %+v, %v", r, err)
	}
}
