// Command image builds orderstream's container image (deploy/image):
//
//	go run ./cmd/image -repo .. -layout ../dist/image -tarball ../dist/orderstream-image.tar \
//	    -version v1.2.3 -created $(git log -1 --format=%ct) [-push registry.example/orderstream:v1.2.3]
//
// `make image` runs it so. It prints the index's digest and each platform's.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/orderstream/orderstream/deploy/image"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	repo := fs.String("repo", "..", "the repository root")
	platforms := fs.String("platforms", "linux/amd64,linux/arm64", "comma-separated os/arch to build")
	layoutDir := fs.String("layout", "", "write the multi-platform index as an OCI image layout in this directory")
	tarballPath := fs.String("tarball", "", "write one platform's image as a docker load tarball here")
	tarballPlatform := fs.String("tarball-platform", "linux/"+runtime.GOARCH, "the platform the tarball holds")
	version := fs.String("version", "dev", "the image's version label, and the tarball's tag")
	revision := fs.String("revision", "", "the commit, for the revision label")
	created := fs.Int64("created", 0, "every timestamp in the image, in Unix seconds (SOURCE_DATE_EPOCH): fixed, so the build is reproducible")
	push := fs.String("push", "", "push the index to this reference (registry/repository:tag)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *layoutDir == "" && *tarballPath == "" && *push == "" {
		return errors.New("nothing to write: give -layout, -tarball or -push")
	}
	var ps []v1.Platform
	for _, s := range strings.Split(*platforms, ",") {
		p, err := v1.ParsePlatform(strings.TrimSpace(s))
		if err != nil {
			return fmt.Errorf("-platforms: %w", err)
		}
		if p.Architecture == "arm64" && p.Variant == "" {
			p.Variant = "v8"
		}
		ps = append(ps, *p)
	}
	idx, err := image.Build(ctx, image.Options{
		Repo: *repo, Platforms: ps, Version: *version, Revision: *revision,
		Created: time.Unix(*created, 0),
	})
	if err != nil {
		return err
	}
	digest, err := idx.Digest()
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "index %s\n", digest)
	for _, p := range ps {
		img, err := image.PlatformImage(idx, p)
		if err != nil {
			return err
		}
		d, err := img.Digest()
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "  %s %s\n", p, d)
	}
	if *layoutDir != "" {
		if err := image.WriteLayout(*layoutDir, idx); err != nil {
			return fmt.Errorf("layout: %w", err)
		}
		fmt.Fprintf(out, "OCI layout: %s\n", *layoutDir)
	}
	if *tarballPath != "" {
		tp, err := v1.ParsePlatform(*tarballPlatform)
		if err != nil {
			return fmt.Errorf("-tarball-platform: %w", err)
		}
		if err := image.WriteTarball(*tarballPath, "orderstream:"+*version, idx, *tp); err != nil {
			return fmt.Errorf("tarball: %w", err)
		}
		fmt.Fprintf(out, "docker load tarball (%s, orderstream:%s): %s\n", tp, *version, *tarballPath)
	}
	if *push != "" {
		ref, err := image.Push(ctx, *push, idx)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "pushed %s@%s\n", ref, digest)
	}
	return nil
}
