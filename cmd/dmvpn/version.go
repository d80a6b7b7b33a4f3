package main

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
)

// version is set by a release build with -ldflags "-X main.version=..."
// (packaging/build.sh uses git describe). Left empty, the version comes
// from the build information the Go toolchain records in the binary: the
// module version for `go install ...@vX.Y.Z`, a pseudo-version and the VCS
// revision for a `go build` in a git checkout.
var version string

// buildInfo says what this binary is. JSON field names are part of
// `dmvpn version --json`'s output.
type buildInfo struct {
	Version    string `json:"version"`               // release version, module version or "devel"
	Commit     string `json:"commit,omitempty"`      // vcs.revision, when the toolchain recorded it
	CommitTime string `json:"commit_time,omitempty"` // vcs.time (RFC 3339)
	Modified   bool   `json:"modified,omitempty"`    // the work tree had uncommitted changes
	Go         string `json:"go"`                    // toolchain, e.g. go1.26.8
	OS         string `json:"os"`
	Arch       string `json:"arch"`
}

// currentBuild describes this binary.
func currentBuild() buildInfo {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		bi = nil
	}
	return describeBuild(version, bi, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// describeBuild combines the -X version (if any) and the toolchain's
// build information (nil if the binary has none). The order of preference
// for Version: the -X stamp, the main module's version unless it is
// "(devel)", then "devel". VCS settings are reported whenever present.
func describeBuild(stamped string, bi *debug.BuildInfo, goVersion, goos, goarch string) buildInfo {
	b := buildInfo{Version: stamped, Go: goVersion, OS: goos, Arch: goarch}
	if bi != nil {
		if bi.GoVersion != "" {
			b.Go = bi.GoVersion
		}
		if b.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			b.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				b.Commit = s.Value
			case "vcs.time":
				b.CommitTime = s.Value
			case "vcs.modified":
				b.Modified = s.Value == "true"
			case "GOOS":
				b.OS = s.Value
			case "GOARCH":
				b.Arch = s.Value
			}
		}
	}
	if b.Version == "" {
		b.Version = "devel"
	}
	return b
}

// String is the one-line form: version, then commit and toolchain.
//
//	dmvpn v0.3.0 (commit 1a2b3c4d5e6f, modified; go1.26.8 linux/amd64)
func (b buildInfo) String() string {
	var s strings.Builder
	fmt.Fprintf(&s, "dmvpn %s (", b.Version)
	if b.Commit != "" {
		c := b.Commit
		if len(c) > 12 {
			c = c[:12]
		}
		fmt.Fprintf(&s, "commit %s", c)
		if b.Modified {
			s.WriteString(", modified")
		}
		s.WriteString("; ")
	}
	fmt.Fprintf(&s, "%s %s/%s)", b.Go, b.OS, b.Arch)
	return s.String()
}

func writeVersion(w io.Writer, b buildInfo, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(b)
	}
	_, err := fmt.Fprintln(w, b.String())
	return err
}

func newVersionCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit and Go toolchain of this binary",
		Long: `Print the version of this dmvpn binary, the git commit it was built from (and
whether the work tree had uncommitted changes), the Go toolchain and the
platform.

A release build (packaging/build.sh) stamps the version from git describe.
Otherwise it comes from the build information Go records in every binary:
the module version for "go install github.com/dmvpn/dmvpn/cmd/dmvpn@vX.Y.Z",
a pseudo-version with the commit for a "go build" in a git checkout, and
"devel" when Go recorded neither (-buildvcs=false, no git).`,
		Example: `  dmvpn version
  dmvpn version --json | jq -r .commit`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return writeVersion(cmd.OutOrStdout(), currentBuild(), asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
