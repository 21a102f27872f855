package secrets

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/smithy-go"
)

// ReadTimeout bounds reading every reference. Lambda gives init 10 s; a
// function in a VPC with no route to Secrets Manager or SSM would otherwise
// hang there and be restarted without a word.
const ReadTimeout = 8 * time.Second

// FromEnv is Resolve of Settings with OpenAWS, bounded by ReadTimeout: what
// every function calls before config.FromEnv (through boot.Init).
func FromEnv(ctx context.Context, getenv func(string) string) (func(string) string, error) {
	return fromEnv(ctx, getenv, ReadTimeout)
}

func fromEnv(ctx context.Context, getenv func(string) string, timeout time.Duration) (func(string) string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	resolved, err := Resolve(ctx, getenv, Settings, OpenAWS)
	if errors.Is(err, context.DeadlineExceeded) {
		return nil, fmt.Errorf("%w (no answer within %v: in a VPC the functions need interface endpoints for Secrets Manager and SSM, template parameter SecretsEndpointsVpcId, or a NAT)", err, timeout)
	}
	return resolved, err
}

// AWS reads references from Secrets Manager (a secret's ARN) and from SSM
// Parameter Store (a parameter's name starting with /, or its ARN), with the
// function's role. The SDK takes its region, credentials and any endpoint
// override (AWS_ENDPOINT_URL_SECRETS_MANAGER, AWS_ENDPOINT_URL_SSM: a VPC
// endpoint's DNS name, or the tests' fake) from the process environment, as
// Lambda sets it.
type AWS struct {
	secrets *secretsmanager.Client
	params  *ssm.Client
}

// OpenAWS is Resolve's open for a deployed function.
func OpenAWS(ctx context.Context) (Store, error) {
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("load the AWS SDK configuration: %w", err)
	}
	return &AWS{secrets: secretsmanager.NewFromConfig(cfg), params: ssm.NewFromConfig(cfg)}, nil
}

// Read returns the string the reference names: a secret's SecretString (its
// current version), or a parameter's decrypted value.
func (a *AWS) Read(ctx context.Context, ref string) (string, error) {
	switch refKind(ref) {
	case kindSecret:
		out, err := a.secrets.GetSecretValue(ctx, &secretsmanager.GetSecretValueInput{SecretId: aws.String(ref)})
		if err != nil {
			return "", explain(err)
		}
		if out.SecretString == nil {
			return "", errors.New("malformed: the secret holds binary data, not a string")
		}
		return *out.SecretString, nil
	case kindParameter:
		out, err := a.params.GetParameter(ctx, &ssm.GetParameterInput{Name: aws.String(ref), WithDecryption: aws.Bool(true)})
		if err != nil {
			return "", explain(err)
		}
		if out.Parameter == nil || out.Parameter.Value == nil {
			return "", errors.New("malformed: SSM returned no value")
		}
		return *out.Parameter.Value, nil
	}
	return "", errors.New("malformed reference: want a Secrets Manager secret ARN (arn:aws:secretsmanager:...) or an SSM parameter name starting with / (or its arn:aws:ssm:... ARN)")
}

type kind int

const (
	kindUnknown kind = iota
	kindSecret
	kindParameter
)

// refKind tells a reference's store from its shape: ARNs name their service
// (arn:PARTITION:SERVICE:...), and SSM parameter names in a hierarchy start
// with a slash (template.yaml's IAM policy needs that to build the ARN).
func refKind(ref string) kind {
	if strings.HasPrefix(ref, "/") {
		return kindParameter
	}
	parts := strings.SplitN(ref, ":", 6)
	if len(parts) < 6 || parts[0] != "arn" {
		return kindUnknown
	}
	switch {
	case parts[2] == "secretsmanager" && strings.HasPrefix(parts[5], "secret:"):
		return kindSecret
	case parts[2] == "ssm" && strings.HasPrefix(parts[5], "parameter/"):
		return kindParameter
	}
	return kindUnknown
}

// explain puts what a person should check ahead of the SDK's error (which
// keeps the request id and the service's own message).
func explain(err error) error {
	var api smithy.APIError
	if !errors.As(err, &api) {
		return err
	}
	switch api.ErrorCode() {
	case "ResourceNotFoundException", "ParameterNotFound":
		return fmt.Errorf("not found (check the name and the region): %w", err)
	case "AccessDeniedException", "AccessDenied", "UnrecognizedClientException":
		return fmt.Errorf("access denied (the function's role may read only the references the stack was deployed with; a customer-managed KMS key needs SecretsKmsKeyArn): %w", err)
	case "DecryptionFailure", "InvalidKeyId", "KMSAccessDeniedException", "KMSDisabledException":
		return fmt.Errorf("cannot decrypt (a customer-managed KMS key needs SecretsKmsKeyArn): %w", err)
	}
	return err
}
