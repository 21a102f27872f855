// Command local serves orderstream with net/http: `go run ./local`.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/orderstream/orderstream/shared/config"
	"github.com/orderstream/orderstream/shared/emf"
	"github.com/orderstream/orderstream/shared/httpapi"
	"github.com/orderstream/orderstream/shared/service"
	"github.com/orderstream/orderstream/shared/socketstreams"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Once the first signal starts the drain, a second one (Ctrl-C again)
	// takes the default action and ends the process at once.
	context.AfterFunc(ctx, stop)
	if err := run(ctx, os.Args, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "orderstream:", err)
		os.Exit(1)
	}
}

// shutdownGrace is how long requests other than streams (a simulation in
// progress, say) get to finish once the drain is over; streams have ended
// by then (SHUTDOWN_DRAIN).
const shutdownGrace = 15 * time.Second

// run serves until ctx is cancelled, then shuts down cleanly.
func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	cfg, err := config.FromArgs(args, getenv, stdout)
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stdout, nil))

	svc, err := service.Open(ctx, logger, cfg)
	if err != nil {
		return err
	}
	defer svc.Close()

	// Live streams leave their handlers as registered sockets where they
	// can (socketstreams): net/http forgets their connections, so shutdown
	// ends them (streams.End), waits for them and closes the registry
	// (streams.Close).
	httpCfg := svc.HTTP
	streams := socketstreams.New(logger, httpCfg, socketstreams.Options{
		Register: !streamsInHandlers,
		Reserve:  svc.Conns,
	})
	defer streams.Close()
	httpCfg.ShuttingDown = streams.Draining
	// Descriptors are a budget: with MAX_STREAMS unset, the streams get
	// what the open-file limit leaves (streams.Limit), and one past it is
	// refused before it takes a descriptor for long.
	limit := streams.Limit()
	httpCfg.MaxStreams = limit.Max
	srv := &http.Server{
		Handler: streams.Wrap(httpapi.NewServer(logger, svc.Broker, httpCfg)),
		// Streams extend their own write deadline per write, so this only
		// bounds ordinary requests. No ReadTimeout: net/http would cancel a
		// long stream's context when it expired. ReadHeaderTimeout and the
		// handlers' own body deadline keep a slowloris client from holding a
		// connection with a request it never finishes.
		ReadHeaderTimeout: cfg.Server.ReadHeaderTimeout,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       cfg.Server.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	srv.RegisterOnShutdown(streams.End)
	if cfg.MetricsEMFService != "" {
		// On ECS the awslogs driver carries these lines to CloudWatch, where
		// they become the metric the service scales on (deploy/ecs). After
		// NewServer, which registers the gauge on svc's registry; the last
		// line comes on return, once the streams have ended.
		defer emf.ServiceReporter(stdout, httpCfg.Metrics, cfg.MetricsEMFService, emfInterval, logger).Start()()
	}

	// Every connection accepted has the dead-peer timeout from the start.
	ln, err := socketstreams.Listen(ctx, cfg.Server.Addr, cfg.Server.PeerTimeout)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	logger.Info("listening", "addr", ln.Addr().String(), "broker", svc.Kind, "max_streams", limit.String())
	if cfg.Server.AddrFile != "" {
		if err := writeFileAtomically(cfg.Server.AddrFile, ln.Addr().String()+"\n"); err != nil {
			ln.Close()
			return fmt.Errorf("addr file: %w", err)
		}
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}

	// Fail /healthz and keep serving while the streams end one by one, so
	// the balancer moves new work elsewhere and the fleet absorbs the
	// reconnects gradually; then stop listening.
	drain := cfg.Server.ShutdownDrain
	logger.Info("shutting down: draining streams (a second signal quits at once)", "drain", drain)
	select {
	case <-time.After(time.Until(streams.Drain(drain))):
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	}
	logger.Info("drained: finishing requests in flight")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		logger.Warn("shutdown grace ran out; closing connections", "err", err)
		srv.Close()
	}
	if err := <-serveErr; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	if err := streams.Close(); err != nil {
		logger.Warn("closing the streams' registry", "err", err)
	}
	logger.Info("stopped")
	return nil
}

// emfInterval is how often METRICS_EMF_SERVICE's line is written:
// CloudWatch's standard resolution. Tests shorten it.
var emfInterval = time.Minute

// streamsInHandlers keeps streams in their handlers, as off Linux: tests
// set it to run the server both ways.
var streamsInHandlers bool

// writeFileAtomically writes data to path through a temporary file renamed
// over it, so that a reader never sees a partial address.
func writeFileAtomically(path, data string) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".addr-*")
	if err != nil {
		return err
	}
	_, err = f.WriteString(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}
