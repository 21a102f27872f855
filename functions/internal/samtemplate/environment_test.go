package samtemplate

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// TestEnvironment: the reader follows what template.yaml's style holds:
// Globals under a function's own variables, a !Ref or a !Join of a
// parameter resolved to its default, folded descriptions that look like
// keys, comments, and variables set by !If left out.
func TestEnvironment(t *testing.T) {
	const src = `Parameters:
  Beat:
    Type: String
    Default: 15s # the contract's
    Description: >-
      HEARTBEAT_INTERVAL: not a variable, a description.
  Prefix:
    Default: "orderstream:"
  Origins:
    Type: CommaDelimitedList
    Default: "*"
  Url:
    Default: ""

Globals:
  Function:
    Environment:
      Variables:
        HEARTBEAT_INTERVAL: !Ref Beat
        REDIS_KEY_PREFIX: !Ref Prefix
        REDIS_URL: !If [HasUrl, !Ref Url, !Ref AWS::NoValue]

Resources:
  # a comment
  Fn:
    Type: AWS::Serverless::Function
    Properties:
      Environment:
        Variables:
          CORS_ALLOWED_ORIGINS: !Join [",", !Ref Origins]
          REDIS_KEY_PREFIX: "mine:"
  Other:
    Type: AWS::Serverless::Function
    Properties:
      Timeout: 60
  Bucket:
    Type: AWS::S3::Bucket
`
	path := filepath.Join(t.TempDir(), "template.yaml")
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := Environment(path)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[string]string{
		"Fn":    {"HEARTBEAT_INTERVAL": "15s", "REDIS_KEY_PREFIX": "mine:", "CORS_ALLOWED_ORIGINS": "*"},
		"Other": {"HEARTBEAT_INTERVAL": "15s", "REDIS_KEY_PREFIX": "orderstream:"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got  %v\nwant %v", got, want)
	}
}
