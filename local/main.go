// Command local serves orderstream with net/http: `go run ./local`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/orderstream/orderstream/shared/config"
	"github.com/orderstream/orderstream/shared/emf"
	"github.com/orderstream/orderstream/shared/httpapi"
	"github.com/orderstream/orderstream/shared/sockets"
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
	cfg, err := config.FromEnv(getenv)
	if err != nil {
		return err
	}
	addr := getenv("ADDR")
	if addr == "" {
		addr = ":8080"
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stdout)
	fs.StringVar(&addr, "addr", addr, "listen address ($ADDR)")
	addrFile := getenv("ADDR_FILE")
	fs.StringVar(&addrFile, "addr-file", addrFile, "once listening, write the address listened on to this file, for scripts and tests ($ADDR_FILE)")
	cfg.RegisterFlags(fs)
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(stdout, nil))

	b, err := cfg.OpenBroker(ctx, logger)
	if err != nil {
		return fmt.Errorf("open broker: %w", err)
	}
	defer b.Close()

	// Live streams leave their handlers as registered sockets
	// (httpapi.Config.Sockets): net/http forgets their connections, so
	// shutdown ends them through streamsDone, waits for them on streams,
	// and then closes the registry.
	streamsDone := make(chan struct{})
	endStreams := sync.OnceFunc(func() { close(streamsDone) })
	var streams httpapi.Streams
	httpCfg := cfg.HTTP(streamsDone)
	if reg := openSockets(logger, httpCfg); reg != nil {
		httpCfg.Sockets = reg
		defer reg.Close()
	}
	defer streams.Wait()
	defer endStreams()
	httpCfg.Streams = &streams
	drain := httpapi.NewDrain(cfg.ShutdownDrain)
	httpCfg.Drain = drain
	srv := &http.Server{
		Handler: httpapi.NewServer(logger, b, httpCfg),
		// Streams extend their own write deadline per write, so this only
		// bounds ordinary requests. No ReadTimeout: net/http would cancel a
		// long stream's context when it expired. ReadHeaderTimeout and the
		// handlers' own body deadline keep a slowloris client from holding a
		// connection with a request it never finishes.
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	srv.RegisterOnShutdown(endStreams)
	if cfg.MetricsEMFService != "" {
		// On ECS the awslogs driver carries these lines to CloudWatch, where
		// they become the metric the service scales on (deploy/ecs). After
		// NewServer, which registers the gauge; the last line comes on return.
		defer emf.ServiceReporter(stdout, httpCfg.Metrics, cfg.MetricsEMFService, emfInterval, logger).Start()()
	}

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	broker := "memory"
	switch {
	case cfg.RedisCluster:
		broker = "redis-cluster"
	case cfg.RedisURL != "":
		broker = "redis"
	}
	logger.Info("listening", "addr", ln.Addr().String(), "broker", broker)
	if addrFile != "" {
		if err := writeFileAtomically(addrFile, ln.Addr().String()+"\n"); err != nil {
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
	logger.Info("shutting down: draining streams (a second signal quits at once)", "drain", cfg.ShutdownDrain)
	select {
	case <-time.After(time.Until(drain.Begin())):
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
	endStreams()
	streams.Wait() // the deferred reg.Close then finds no stream left
	logger.Info("stopped")
	return nil
}

// emfInterval is how often METRICS_EMF_SERVICE's line is written:
// CloudWatch's standard resolution. Tests shorten it.
var emfInterval = time.Minute

// streamsInHandlers keeps streams in their handlers, as off Linux: tests
// set it to run the server both ways.
var streamsInHandlers bool

// openSockets returns the registry that holds live streams as sockets, or
// nil where there is none (off Linux) or it cannot be made: streams then
// stay in their handlers.
func openSockets(logger *slog.Logger, cfg httpapi.Config) *sockets.Registry {
	if streamsInHandlers {
		return nil
	}
	reg, err := sockets.New(httpapi.SocketOptions(cfg))
	if err != nil {
		if !errors.Is(err, sockets.ErrUnsupported) {
			logger.Warn("live streams stay in their handlers", "err", err)
		}
		return nil
	}
	return reg
}

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
