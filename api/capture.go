package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dmvpn/dmvpn/capture"
)

// CaptureProvider is a Provider that captures packets (package node
// implements it): GET /v1/capture streams pcapng. A Provider without it
// answers 404 there.
type CaptureProvider interface {
	Provider
	// StartCapture attaches a capture to the data plane (it fills in
	// Options.Device and Node); the API runs it and writes it out.
	StartCapture(o capture.Options) (*capture.Session, error)
}

// CaptureQuery is what GET /v1/capture takes, as query parameters:
// point=inner,outer,control (default inner), filter=TEXT (capture.FilterHelp),
// snaplen=N, count=N, duration=D (Go syntax: 10s, 1m).
type CaptureQuery struct {
	Points   []string
	Filter   string
	SnapLen  int
	Count    int
	Duration time.Duration
}

// Values encodes q as URL query parameters.
func (q CaptureQuery) Values() url.Values {
	v := url.Values{}
	if len(q.Points) > 0 {
		v.Set("point", strings.Join(q.Points, ","))
	}
	if q.Filter != "" {
		v.Set("filter", q.Filter)
	}
	if q.SnapLen != 0 {
		v.Set("snaplen", strconv.Itoa(q.SnapLen))
	}
	if q.Count != 0 {
		v.Set("count", strconv.Itoa(q.Count))
	}
	if q.Duration != 0 {
		v.Set("duration", q.Duration.String())
	}
	return v
}

// CaptureResult is what a capture saw; GET /v1/capture sends it as the
// trailer Dmvpn-Capture-Result (JSON) after the last pcapng block.
type CaptureResult struct {
	Captured uint64 `json:"captured"` // packets written (past the filter)
	Seen     uint64 `json:"seen"`     // packets the tap copied
	Dropped  uint64 `json:"dropped"`  // packets not copied: the buffer was full
	Error    string `json:"error,omitempty"`
}

// Response headers of GET /v1/capture.
const (
	// CaptureIDHeader names the capture, for POST /v1/capture/{id}/stop.
	CaptureIDHeader = "Dmvpn-Capture-Id"
	// CaptureInfoHeader says what is captured where, for the CLI to print.
	CaptureInfoHeader = "Dmvpn-Capture-Info"
	// CaptureResultTrailer carries the CaptureResult (JSON).
	CaptureResultTrailer = "Dmvpn-Capture-Result"
)

// ParseCaptureOptions reads GET /v1/capture's query into capture options.
func ParseCaptureOptions(v url.Values) (capture.Options, error) {
	var o capture.Options
	points := v.Get("point")
	if points == "" {
		points = "inner"
	}
	for _, p := range strings.Split(points, ",") {
		switch strings.TrimSpace(p) {
		case "inner":
			o.Points |= capture.PointInner
		case "outer":
			o.Points |= capture.PointOuter
		case "control":
			o.Points |= capture.PointControl
		default:
			return o, fmt.Errorf("point %q: want inner, outer or control", p)
		}
	}
	f, err := capture.ParseFilter(v.Get("filter"))
	if err != nil {
		return o, err
	}
	o.Filter = f
	num := func(name string, lo, hi int) (int, error) {
		s := v.Get(name)
		if s == "" {
			return 0, nil
		}
		n, err := strconv.Atoi(s)
		if err != nil || n < lo || n > hi {
			return 0, fmt.Errorf("%s %q: want a number from %d to %d", name, s, lo, hi)
		}
		return n, nil
	}
	if o.SnapLen, err = num("snaplen", 1, capture.MaxSnapLen); err != nil {
		return o, err
	}
	if o.Count, err = num("count", 0, 1<<31-1); err != nil {
		return o, err
	}
	if s := v.Get("duration"); s != "" {
		if o.Duration, err = time.ParseDuration(s); err != nil || o.Duration < 0 {
			return o, fmt.Errorf("duration %q: want a Go duration such as 30s or 5m", s)
		}
	}
	return o, nil
}

// captures are the captures the API is running, by ID, for the stop
// request.
type captures struct {
	mu   sync.Mutex
	next uint64
	stop map[string]context.CancelFunc
}

func (c *captures) add(cancel context.CancelFunc) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.next++
	id := strconv.FormatUint(c.next, 10)
	if c.stop == nil {
		c.stop = map[string]context.CancelFunc{}
	}
	c.stop[id] = cancel
	return id
}

func (c *captures) remove(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.stop, id)
}

func (c *captures) cancel(id string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, ok := c.stop[id]
	if ok {
		f()
	}
	return ok
}

// handleCapture registers GET /v1/capture and POST /v1/capture/{id}/stop.
// A capture runs in its request's goroutine (the data plane only copies
// into its ring) until its count or duration, a stop request, the client
// going away, or srvCtx (the daemon shutting down).
func handleCapture(mux *http.ServeMux, srvCtx context.Context, p CaptureProvider) {
	var running captures
	mux.HandleFunc("GET /v1/capture", func(w http.ResponseWriter, r *http.Request) {
		o, err := ParseCaptureOptions(r.URL.Query())
		if err != nil {
			http.Error(w, "capture: "+err.Error(), http.StatusBadRequest)
			return
		}
		s, err := p.StartCapture(o)
		if err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		defer s.Close()
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		defer context.AfterFunc(srvCtx, cancel)()
		id := running.add(cancel)
		defer running.remove(id)

		h := w.Header()
		h.Set("Content-Type", "application/x-pcapng")
		h.Set("Trailer", CaptureResultTrailer)
		h.Set(CaptureIDHeader, id)
		h.Set(CaptureInfoHeader, s.Describe())
		w.WriteHeader(http.StatusOK)
		rc := http.NewResponseController(w)
		res, err := s.Run(ctx, w, func() { _ = rc.Flush() })
		out := CaptureResult{Captured: res.Captured, Seen: res.Seen, Dropped: res.Dropped}
		if err != nil {
			out.Error = err.Error()
		}
		b, _ := json.Marshal(out)
		h.Set(CaptureResultTrailer, string(b))
	})
	mux.HandleFunc("POST /v1/capture/{id}/stop", func(w http.ResponseWriter, r *http.Request) {
		if !running.cancel(r.PathValue("id")) {
			http.Error(w, "no such capture", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, "{}\n")
	})
}

// CaptureStream is a capture the daemon is streaming: Info says what it
// captures; Wait copies the pcapng to the writer given to Capture until the
// capture ends.
type CaptureStream struct {
	ID, Info string
	resp     *http.Response
	w        io.Writer
}

// Capture starts a capture (GET /v1/capture) and returns once the daemon
// has attached it: packets are being captured from then on. ctx bounds the
// whole capture; cancelling it drops the connection, and the file then ends
// where it was cut. Stop ends a capture cleanly.
func (c *Client) Capture(ctx context.Context, q CaptureQuery, w io.Writer) (*CaptureStream, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://dmvpn/v1/capture?"+q.Values().Encode(), nil)
	if err != nil {
		return nil, err
	}
	// No client timeout: a capture lasts as long as it is asked to.
	hc := &http.Client{Transport: c.hc.Transport}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the dmvpn daemon at %s (is `dmvpn run` running?): %w", c.path, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if resp.StatusCode == http.StatusNotFound {
			return nil, fmt.Errorf("api: this daemon cannot capture (%s)", resp.Status)
		}
		return nil, fmt.Errorf("api: %s", strings.TrimSpace(string(msg)))
	}
	return &CaptureStream{ID: resp.Header.Get(CaptureIDHeader), Info: resp.Header.Get(CaptureInfoHeader), resp: resp, w: w}, nil
}

// Wait copies the capture to the writer until the daemon ends it, and
// returns what the daemon reports it saw.
func (s *CaptureStream) Wait() (CaptureResult, error) {
	defer s.resp.Body.Close()
	var res CaptureResult
	if _, err := io.Copy(s.w, s.resp.Body); err != nil {
		return res, err
	}
	t := s.resp.Trailer.Get(CaptureResultTrailer)
	if t == "" {
		return res, errors.New("api: the capture ended without its result (did the daemon stop?)")
	}
	if err := json.Unmarshal([]byte(t), &res); err != nil {
		return res, fmt.Errorf("api: capture result %q: %w", t, err)
	}
	if res.Error != "" {
		return res, errors.New("capture: " + res.Error)
	}
	return res, nil
}

// StopCapture asks the daemon to end capture id cleanly (the stream then
// ends with the statistics and the result).
func (c *Client) StopCapture(ctx context.Context, id string) error {
	_, err := c.do(ctx, http.MethodPost, "capture/"+url.PathEscape(id)+"/stop", nil)
	return err
}
