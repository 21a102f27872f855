// Package image builds orderstream's container image without a Docker
// daemon: the local server compiled as `make build` compiles it (static, CGO
// off, -trimpath), for each platform, put alone on an empty base with the
// configuration an orchestrator needs, and written as an OCI image layout, a
// `docker load` tarball, or pushed to a registry, with go-containerregistry.
//
// The result is reproducible: every timestamp is Options.Created, so the same
// tree and toolchain give the same digest.
package image

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// What the image holds and how it runs; deploy/ecs and deploy/kubernetes
// repeat the user and port, and their tests hold them to these.
const (
	Binary = "/orderstream"
	UID    = 65532 // no name needed: nothing in the binary looks the user up
	GID    = 65532
	Port   = 8080
	Source = "https://github.com/orderstream/orderstream"
)

// BuildEnv and BuildFlags are `make build`'s: a static binary (no libc to
// ship: the base is empty) whose paths name no build machine.
var (
	BuildEnv   = []string{"CGO_ENABLED=0"}
	BuildFlags = []string{"-trimpath"}
)

// Platforms are the default targets: Fargate and most clusters run both, and
// Graviton (arm64) is the cheaper.
var Platforms = []v1.Platform{{OS: "linux", Architecture: "amd64"}, {OS: "linux", Architecture: "arm64", Variant: "v8"}}

// Options say what to build and how to label it.
type Options struct {
	Repo      string        // the repository root (the service's go.mod)
	Platforms []v1.Platform // nil: Platforms
	Version   string        // org.opencontainers.image.version
	Revision  string        // org.opencontainers.image.revision (a commit), optional
	Created   time.Time     // every timestamp in the image (SOURCE_DATE_EPOCH)
	Go        string        // the go command; "": go
}

// Build compiles the server for each platform and returns the multi-platform
// index of the images.
func Build(ctx context.Context, o Options) (v1.ImageIndex, error) {
	platforms := o.Platforms
	if platforms == nil {
		platforms = Platforms
	}
	dir, err := os.MkdirTemp("", "orderstream-image-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range platforms {
		bin := filepath.Join(dir, p.OS+"-"+p.Architecture, "orderstream")
		if err := CompileServer(ctx, o.Repo, p, bin, o.Go); err != nil {
			return nil, err
		}
		b, err := os.ReadFile(bin)
		if err != nil {
			return nil, err
		}
		img, err := FromBinary(b, p, o)
		if err != nil {
			return nil, fmt.Errorf("image for %s: %w", p, err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
	}
	return mutate.Annotations(idx, o.labels()).(v1.ImageIndex), nil
}

// CompileServer builds ./local of repo for p into out, with BuildEnv and
// BuildFlags.
func CompileServer(ctx context.Context, repo string, p v1.Platform, out, goCmd string) error {
	if goCmd == "" {
		goCmd = "go"
	}
	args := append([]string{"build"}, BuildFlags...)
	cmd := exec.CommandContext(ctx, goCmd, append(args, "-o", out, "./local")...)
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), BuildEnv...)
	cmd.Env = append(cmd.Env, "GOOS="+p.OS, "GOARCH="+p.Architecture)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./local for %s: %w\n%s", p, err, out)
	}
	return nil
}

func (o Options) labels() map[string]string {
	l := map[string]string{
		"org.opencontainers.image.title":       "orderstream",
		"org.opencontainers.image.description": "Live order-status updates over Server-Sent Events",
		"org.opencontainers.image.source":      Source,
		"org.opencontainers.image.version":     o.Version,
		"org.opencontainers.image.created":     o.Created.UTC().Format(time.RFC3339),
	}
	if o.Revision != "" {
		l["org.opencontainers.image.revision"] = o.Revision
	}
	return l
}

// FromBinary is the image of one platform: an empty base, one layer holding
// the binary, and the configuration.
func FromBinary(binary []byte, p v1.Platform, o Options) (v1.Image, error) {
	created := o.Created.UTC().Truncate(time.Second)
	var layerTar bytes.Buffer
	tw := tar.NewWriter(&layerTar)
	hdr := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     Binary[1:],
		Mode:     0o755, // owned by root, run by UID: the process cannot change its own binary
		Size:     int64(len(binary)),
		ModTime:  created,
		Format:   tar.FormatPAX,
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, err
	}
	if _, err := tw.Write(binary); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	tarBytes := layerTar.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(tarBytes)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
	if err != nil {
		return nil, err
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{Layer: layer, History: v1.History{
		Created:   v1.Time{Time: created},
		CreatedBy: "make image (deploy/image): go build " + fmt.Sprint(BuildFlags) + " ./local",
	}})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Created = v1.Time{Time: created}
	cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
	cf.Config = v1.Config{
		Entrypoint:   []string{Binary},
		User:         strconv.Itoa(UID) + ":" + strconv.Itoa(GID),
		Env:          []string{"ADDR=:" + strconv.Itoa(Port)},
		ExposedPorts: map[string]struct{}{strconv.Itoa(Port) + "/tcp": {}},
		WorkingDir:   "/",
		StopSignal:   "SIGTERM", // starts the drain (README, "Behind a proxy")
		Labels:       o.labels(),
	}
	return mutate.ConfigFile(img, cf)
}

// WriteLayout writes idx as an OCI image layout at dir, replacing what was
// there.
func WriteLayout(dir string, idx v1.ImageIndex) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	_, err := layout.Write(dir, idx)
	return err
}

// PlatformImage is idx's image for p.
func PlatformImage(idx v1.ImageIndex, p v1.Platform) (v1.Image, error) {
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	for _, d := range im.Manifests {
		if d.Platform != nil && d.Platform.OS == p.OS && d.Platform.Architecture == p.Architecture {
			return idx.Image(d.Digest)
		}
	}
	return nil, fmt.Errorf("no image for %s/%s in the index", p.OS, p.Architecture)
}

// WriteTarball writes idx's image for p as a `docker load` tarball tagged
// tag (a tarball holds one platform: docker loads no index).
func WriteTarball(path, tag string, idx v1.ImageIndex, p v1.Platform) error {
	t, err := name.NewTag(tag)
	if err != nil {
		return fmt.Errorf("tarball tag: %w", err)
	}
	img, err := PlatformImage(idx, p)
	if err != nil {
		return err
	}
	return tarball.WriteToFile(path, t, img)
}

// Push writes idx, every platform, to ref (registry/repository:tag) with
// the credentials docker or a credential helper keeps (~/.docker/config.json).
func Push(ctx context.Context, ref string, idx v1.ImageIndex) (name.Reference, error) {
	r, err := name.ParseReference(ref)
	if err != nil {
		return nil, fmt.Errorf("push: %w", err)
	}
	if err := remote.WriteIndex(r, idx, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
		return nil, fmt.Errorf("push %s: %w", r, err)
	}
	return r, nil
}
