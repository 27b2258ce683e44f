// Package opcache lets the agent work with PHP's OPcache in a php-fpm pool:
// read its state, drop the compiled scripts of files a release slot
// changes, compile a staged release's files before the switch, and tell
// whether a request still runs under a directory.
//
// PHP offers this only from inside the pool, so the agent installs a small
// helper script (helper.php, outside every document root) and runs it over
// FastCGI on the pool's socket, as operators' tools (cachetool and alike)
// do. The FastCGI client is github.com/yookoala/gofast.
package opcache

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/dustin/go-humanize"
	"github.com/yookoala/gofast"

	"github.com/loopcast/loopcast/internal/atomicfile"
)

//go:embed helper.php
var helper []byte

// HelperName is the helper script's file name.
const HelperName = "loopcast-opcache.php"

// HelperDir is where the agent keeps the helper under its store's root.
func HelperDir(root string) string { return filepath.Join(root, "opcache") }

// ForStore returns a client for the pool at socket through the helper the
// agent of the store at root installs (Install puts it there).
func ForStore(root, socket string) *Client {
	return &Client{Socket: socket, Helper: filepath.Join(HelperDir(root), HelperName)}
}

// DefaultTimeout bounds one call to the pool: a compile of a large
// release's changed files fits, a hung pool does not stall a deploy.
const DefaultTimeout = 60 * time.Second

// ErrPool wraps every failure to reach the pool or run the helper.
var ErrPool = errors.New("opcache: php-fpm pool")

// Status is OPcache's state in the pool.
type Status struct {
	Enabled            bool  `json:"enabled"`
	ValidateTimestamps bool  `json:"validate_timestamps"`
	MemoryLimit        int64 `json:"memory_limit"` // opcache.memory_consumption, bytes
	UsedMemory         int64 `json:"used_memory"`
	FreeMemory         int64 `json:"free_memory"`
	WastedMemory       int64 `json:"wasted_memory"`
	Scripts            int   `json:"scripts"`
	MaxScripts         int   `json:"max_scripts"`
	Hits               int64 `json:"hits"`
	Misses             int64 `json:"misses"`
	OOMRestarts        int   `json:"oom_restarts"`
	HashRestarts       int   `json:"hash_restarts"`
	ManualRestarts     int   `json:"manual_restarts"`
	StartTime          int64 `json:"start_time"` // Unix seconds: a change means the pool restarted
	CacheFull          bool  `json:"cache_full"`
	// ActiveRequests is how many requests the pool ran besides the
	// helper's when asked (-1: unknown).
	ActiveRequests int `json:"active_requests"`
	// RealpathCacheTTL is PHP's realpath_cache_ttl (seconds): how long a
	// worker may resolve a path as it resolved it before.
	RealpathCacheTTL int `json:"realpath_cache_ttl"`
}

// Restarts is how often OPcache emptied itself since the pool started.
func (s *Status) Restarts() int { return s.OOMRestarts + s.HashRestarts + s.ManualRestarts }

// nearFull is the share of memory or keys above which NearFull says so.
const nearFull = 0.9

// NearFull says, when OPcache is full or close to it, what is short; ""
// otherwise. A full OPcache stops caching new scripts until it restarts.
func (s *Status) NearFull() string {
	switch {
	case !s.Enabled:
		return ""
	case s.CacheFull:
		return "OPcache is full: new scripts are not cached until it restarts"
	case s.MemoryLimit > 0 && float64(s.UsedMemory+s.WastedMemory) > nearFull*float64(s.MemoryLimit):
		return fmt.Sprintf("OPcache memory %d%% used (%s of %s, %s wasted)",
			(s.UsedMemory+s.WastedMemory)*100/s.MemoryLimit, humanize.IBytes(uint64(s.UsedMemory)), humanize.IBytes(uint64(s.MemoryLimit)), humanize.IBytes(uint64(s.WastedMemory)))
	case s.MaxScripts > 0 && float64(s.Scripts) > nearFull*float64(s.MaxScripts):
		return fmt.Sprintf("OPcache holds %d scripts of at most %d", s.Scripts, s.MaxScripts)
	}
	return ""
}

// Client talks to one php-fpm pool.
type Client struct {
	// Socket is the pool's listen address: a unix socket path, or
	// host:port for TCP.
	Socket string
	// Helper is the helper script's path, readable by the pool's user.
	Helper string
	// Timeout bounds each call; DefaultTimeout when zero.
	Timeout time.Duration
}

// Install writes the helper script into dir (created 0755) and returns a
// client for the pool at socket that runs it. The file is replaced
// atomically, so a running call never reads half of it.
func Install(dir, socket string) (*Client, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("opcache: %w", err)
	}
	path := filepath.Join(dir, HelperName)
	if old, err := os.ReadFile(path); err != nil || !bytes.Equal(old, helper) {
		if err := atomicfile.WriteFile(path, helper, 0o644); err != nil {
			return nil, fmt.Errorf("opcache: install helper: %w", err)
		}
	}
	return &Client{Socket: socket, Helper: path}, nil
}

// request is the helper's input.
type request struct {
	Op    string   `json:"op"`
	Dir   string   `json:"dir,omitempty"`
	Paths []string `json:"paths,omitempty"`
}

// reply is the helper's output.
type reply struct {
	OK          bool     `json:"ok"`
	Error       string   `json:"error"`
	Busy        []string `json:"busy"`
	Unknown     int      `json:"unknown"`
	Queue       int      `json:"queue"`
	Done        int      `json:"done"`
	Failed      []string `json:"failed"`
	FailedCount int      `json:"failed_count"`
	Status      Status   `json:"status"`
}

// Status returns OPcache's state.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	r, err := c.call(ctx, request{Op: "status"})
	if err != nil {
		return nil, err
	}
	return &r.Status, nil
}

// Busy returns the pool's requests now under dir (state and script; every
// state but idle counts: a finishing request's shutdown functions still
// include files), and how many requests might be: in the listen queue, or
// in a process whose script is not known yet.
func (c *Client) Busy(ctx context.Context, dir string) (scripts []string, unknown int, err error) {
	r, err := c.call(ctx, request{Op: "busy", Dir: dir})
	if err != nil {
		return nil, 0, err
	}
	return r.Busy, r.Unknown + r.Queue, nil
}

// RealpathCacheTTL returns the pool's realpath_cache_ttl.
func (c *Client) RealpathCacheTTL(ctx context.Context) (time.Duration, error) {
	st, err := c.Status(ctx)
	if err != nil {
		return 0, err
	}
	return time.Duration(st.RealpathCacheTTL) * time.Second, nil
}

// Invalidate drops the compiled scripts of paths (relative to dir) from
// OPcache; nil paths drops every script cached under dir. It returns how
// many were cached.
func (c *Client) Invalidate(ctx context.Context, dir string, paths []string) (int, error) {
	for _, p := range paths {
		if !utf8.ValidString(p) {
			paths = nil // JSON cannot carry the name: drop everything under dir
			break
		}
	}
	if paths == nil {
		r, err := c.call(ctx, request{Op: "invalidate", Dir: dir})
		if err != nil {
			return 0, err
		}
		return r.Done, nil
	}
	done := 0
	for batch := range slices.Chunk(paths, batchPaths) {
		r, err := c.call(ctx, request{Op: "invalidate", Dir: dir, Paths: batch})
		if err != nil {
			return done, err
		}
		done += r.Done
	}
	return done, nil
}

// batchPaths bounds the paths one call carries: a release that changes
// everything makes several calls of well under PHP's post_max_size.
const batchPaths = 2000

// Compile compiles paths (relative to dir) into OPcache, skipping those
// cached already. It returns how many it compiled; a file that does not
// compile is named in the error, which wraps no ErrPool (the pool works).
func (c *Client) Compile(ctx context.Context, dir string, paths []string) (int, error) {
	done, failed, first := 0, 0, ""
	for batch := range slices.Chunk(paths, batchPaths) {
		r, err := c.call(ctx, request{Op: "compile", Dir: dir, Paths: batch})
		if err != nil {
			return done, err
		}
		done += r.Done
		if r.FailedCount > 0 && failed == 0 {
			first = r.Failed[0]
		}
		failed += r.FailedCount
	}
	if failed > 0 {
		return done, fmt.Errorf("opcache: %d files did not compile, e.g. %s", failed, first)
	}
	return done, nil
}

// call runs the helper with req, once more if the pool ended the first
// request with no output at all (before its deadline: a slow helper is not
// asked twice): under load php-fpm was seen to close 2
// to 4 of 20 connections that way (no status, no headers, nothing on
// stderr, nothing in its log), and every helper request may run twice
// (a compile or an invalidation done twice is done).
func (c *Client) call(ctx context.Context, req request) (*reply, error) {
	r, err := c.call1(ctx, req)
	if errors.Is(err, errEmptyResponse) && ctx.Err() == nil {
		r, err = c.call1(ctx, req)
	}
	return r, err
}

// errEmptyResponse is a helper request that the pool answered with
// nothing.
var errEmptyResponse = errors.New("the pool closed the request with no output")

// call1 runs the helper with req once.
func (c *Client) call1(ctx context.Context, req request) (*reply, error) {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("opcache: %w", err)
	}
	network := "unix"
	if _, _, err := net.SplitHostPort(c.Socket); err == nil && !filepath.IsAbs(c.Socket) {
		network = "tcp"
	}
	deadline, _ := ctx.Deadline()
	dial := func() (net.Conn, error) {
		var d net.Dialer
		conn, err := d.DialContext(ctx, network, c.Socket)
		if err == nil {
			conn.SetDeadline(deadline)
		}
		return conn, err
	}
	client, err := gofast.SimpleClientFactory(dial)()
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrPool, c.Socket, err)
	}
	defer client.Close()

	raw, _ := http.NewRequestWithContext(ctx, http.MethodPost, "/"+HelperName, nil)
	fr := gofast.NewRequest(raw)
	fr.Stdin = io.NopCloser(bytes.NewReader(body))
	for k, v := range map[string]string{
		"GATEWAY_INTERFACE": "CGI/1.1",
		"SERVER_PROTOCOL":   "HTTP/1.1",
		"REQUEST_METHOD":    http.MethodPost,
		"SCRIPT_FILENAME":   c.Helper,
		"SCRIPT_NAME":       "/" + HelperName,
		"REQUEST_URI":       "/" + HelperName,
		"DOCUMENT_ROOT":     filepath.Dir(c.Helper),
		"CONTENT_TYPE":      "application/json",
		"CONTENT_LENGTH":    strconv.Itoa(len(body)),
		"SERVER_SOFTWARE":   "loopcast-agent",
		"REMOTE_ADDR":       "127.0.0.1",
	} {
		fr.Params[k] = v
	}
	resp, err := client.Do(fr)
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrPool, c.Socket, err)
	}
	var rec recorder
	var stderr bytes.Buffer
	err = resp.WriteTo(&rec, &stderr)
	if err == nil && ctx.Err() != nil {
		err = ctx.Err()
	}
	if err != nil && rec.body.Len() == 0 && stderr.Len() == 0 && ctx.Err() == nil && time.Now().Before(deadline) {
		err = fmt.Errorf("%w (%w)", errEmptyResponse, err)
	}
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrPool, c.Socket, err)
	}
	var r reply
	if jerr := json.Unmarshal(rec.body.Bytes(), &r); jerr != nil || rec.code() != http.StatusOK || !r.OK {
		msg := r.Error
		if msg == "" {
			msg = fmt.Sprintf("status %d: %.300q %.300q", rec.code(), rec.body.Bytes(), stderr.Bytes())
		}
		return nil, fmt.Errorf("%w %s: %s: %s", ErrPool, c.Socket, c.Helper, msg)
	}
	return &r, nil
}

// recorder is the http.ResponseWriter gofast writes the helper's answer to.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header {
	if r.header == nil {
		r.header = http.Header{}
	}
	return r.header
}

func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }
func (r *recorder) WriteHeader(code int)        { r.status = code }

func (r *recorder) code() int {
	if r.status == 0 {
		return http.StatusOK
	}
	return r.status
}
