package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/dmvpn/dmvpn/events"
)

// EventsProvider is a Provider with an event stream (package node
// implements it): GET /v1/events. A Provider without it answers 404 there.
type EventsProvider interface {
	// SubscribeEvents starts a subscription with the last history
	// events kept (events.Bus.Subscribe).
	SubscribeEvents(history int) (*events.Sub, error)
}

// eventsGrace is how long a stream goes on after the daemon starts to stop,
// so it carries the shutdown's events (nhs-down, purge-sent, node-down)
// until the node closes its bus.
const eventsGrace = 5 * time.Second

// handleEvents registers GET /v1/events?history=N: newline-delimited JSON,
// one events.Event per line, flushed as each happens, until the client
// goes or the node stops (its bus closes). A subscriber that does not keep
// up loses events and gets a "dropped" line with the count.
func handleEvents(mux *http.ServeMux, srvCtx context.Context, p EventsProvider) {
	mux.HandleFunc("GET /v1/events", func(w http.ResponseWriter, r *http.Request) {
		history := 0
		if s := r.URL.Query().Get("history"); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 || n > events.DefaultHistory {
				http.Error(w, fmt.Sprintf("events: history %q: want a number from 0 to %d", s, events.DefaultHistory), http.StatusBadRequest)
				return
			}
			history = n
		}
		sub, err := p.SubscribeEvents(history)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		defer sub.Close()
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		defer context.AfterFunc(srvCtx, func() { time.AfterFunc(eventsGrace, cancel) })()

		w.Header().Set("Content-Type", "application/x-ndjson")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusOK)
		rc := http.NewResponseController(w)
		_ = rc.Flush() // the client knows it is subscribed
		enc := json.NewEncoder(w)
		for {
			ev, ok := sub.Next(ctx)
			if !ok {
				return
			}
			if enc.Encode(ev) != nil || rc.Flush() != nil {
				return
			}
		}
	})
}

// maxEventLine bounds one line of the event stream the client reads.
const maxEventLine = 64 << 10

// Events streams the daemon's events (GET /v1/events): the last history
// ones it kept, then each as it happens, passed to f with the JSON line it
// came as. It returns when ctx is done (nil), when f returns an error
// (that error), or when the daemon ends the stream (io.EOF: it stopped).
func (c *Client) Events(ctx context.Context, history int, f func(ev events.Event, line []byte) error) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://dmvpn/v1/events?history="+strconv.Itoa(history), nil)
	if err != nil {
		return err
	}
	// No client timeout: a stream lasts as long as it is wanted.
	hc := &http.Client{Transport: c.hc.Transport}
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("cannot reach the dmvpn daemon at %s (is `dmvpn run` running?): %w", c.path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		if resp.StatusCode == http.StatusNotFound {
			return fmt.Errorf("api: this daemon has no event stream (%s)", resp.Status)
		}
		return fmt.Errorf("api: events: %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 4096), maxEventLine)
	for sc.Scan() {
		var ev events.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			return fmt.Errorf("api: events: %w: %.200q", err, sc.Bytes())
		}
		if err := f(ev, sc.Bytes()); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	if err := sc.Err(); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("api: events: %w", err)
	}
	return io.EOF
}
