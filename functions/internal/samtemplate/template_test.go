package samtemplate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
)

const (
	templatePath = "../../../template.yaml"
	secretARN    = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:orderstream/redis-AbCdEf"
	keyARN       = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
)

// cfn is a transformed, resolved template.
type cfn struct {
	Parameters map[string]struct {
		Type           string
		Default        any
		NoEcho         any
		AllowedPattern string
		MaxValue       any
	}
	Resources map[string]resource
	Outputs   map[string]any
}

type resource struct {
	Type           string
	Properties     map[string]any
	DependsOn      any
	Metadata       map[string]any
	DeletionPolicy string
}

// python finds the interpreter that has samtranslator and cfn-lint:
// $SAM_PYTHON, cfn-lint's own (its shebang), or python3, and returns its
// real path (pyenv's shims take seconds a start). None: an error, and the
// tests fail, since a template nobody transformed is one nobody checked.
func python() (string, error) {
	var candidates []string
	if p := os.Getenv("SAM_PYTHON"); p != "" {
		candidates = append(candidates, p)
	}
	if lint, err := exec.LookPath("cfn-lint"); err == nil {
		if b, err := os.ReadFile(lint); err == nil {
			first, _, _ := strings.Cut(string(b), "\n")
			if strings.HasPrefix(first, "#!") && strings.Contains(first, "python") && !strings.Contains(first, "/env ") {
				candidates = append(candidates, strings.TrimSpace(strings.TrimPrefix(first, "#!")))
			}
		}
	}
	candidates = append(candidates, "python3")
	for _, p := range candidates {
		out, err := exec.Command(p, "-c", "import samtranslator, cfnlint, sys; print(sys.executable)").Output()
		if err == nil {
			return strings.TrimSpace(string(out)), nil
		}
	}
	return "", fmt.Errorf("no Python with samtranslator and cfn-lint among %v: install cfn-lint (pip install cfn-lint), or set SAM_PYTHON", candidates)
}

// The transforms every test reads: the scenarios, then scenario 2 with the
// REST API's root method changed. One Python run for all of them.
var (
	transformOnce sync.Once
	transformed   []cfn
	transformErr  error
)

const changedMethod = "            Path: /\n            Method: ANY\n            ResponseTransferMode: RESPONSE_STREAM"

func transformAll() ([]cfn, error) {
	src, err := os.ReadFile(templatePath)
	if err != nil {
		return nil, err
	}
	if strings.Count(string(src), changedMethod) != 1 {
		return nil, fmt.Errorf("template.yaml no longer has the root method TestTemplateDeploymentFollowsMethods changes:\n%s", changedMethod)
	}
	dir, err := os.MkdirTemp("", "samtemplate-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	changed := filepath.Join(dir, "template.yaml")
	if err := os.WriteFile(changed, []byte(strings.Replace(string(src), changedMethod, strings.Replace(changedMethod, "ANY", "GET", 1), 1)), 0o644); err != nil {
		return nil, err
	}
	type request struct {
		Template string            `json:"template"`
		Params   map[string]string `json:"params"`
	}
	var reqs []request
	for _, sc := range scenarios {
		reqs = append(reqs, request{templatePath, sc.params})
	}
	reqs = append(reqs, request{changed, scenarios[2].params})
	in, err := json.Marshal(reqs)
	if err != nil {
		return nil, err
	}
	py, err := python()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(py, "transform.py")
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("transform: %v\n%s", err, stderr.String())
	}
	var res []cfn
	if err := json.Unmarshal(out, &res); err != nil {
		return nil, fmt.Errorf("transform output: %w", err)
	}
	if len(res) != len(reqs) {
		return nil, fmt.Errorf("%d transforms for %d requests", len(res), len(reqs))
	}
	return res, nil
}

// transform returns scenario i transformed (len(scenarios): the changed one).
func transform(t *testing.T, i int) cfn {
	t.Helper()
	if testing.Short() {
		t.Skip("system test (the real SAM transform, in cfn-lint's Python): skipped by -short; make test runs it")
	}
	transformOnce.Do(func() { transformed, transformErr = transformAll() })
	if transformErr != nil {
		t.Fatal(transformErr)
	}
	return transformed[i]
}

func (c cfn) ofType(typ string) map[string]resource {
	m := map[string]resource{}
	for name, r := range c.Resources {
		if r.Type == typ {
			m[name] = r
		}
	}
	return m
}

// refName is the logical id a {"Ref": id} or {"Fn::GetAtt": [id, ...]} names.
func refName(v any) string {
	m, _ := v.(map[string]any)
	if r, ok := m["Ref"].(string); ok {
		return r
	}
	if g, ok := m["Fn::GetAtt"].([]any); ok && len(g) > 0 {
		s, _ := g[0].(string)
		return s
	}
	return ""
}

func get(v any, path ...string) any {
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func strs(v any) []string {
	l, _ := v.([]any)
	var s []string
	for _, x := range l {
		if str, ok := x.(string); ok {
			s = append(s, strings.ToLower(str))
		}
	}
	return s
}

var scenarios = []struct {
	name   string
	vpc    bool
	params map[string]string
}{
	{"internet, secrets in Secrets Manager and SSM, caps reserved", false, map[string]string{
		"RedisUrlSecret": secretARN, "Auth": "secret", "AuthJwtSecretRef": "/orderstream/jwt-secret",
		"StreamReservedConcurrency": "100", "ApiReservedConcurrency": "20",
	}},
	{"internet, plain Redis without password, no auth", false, map[string]string{
		"RedisUrl": "rediss://cache.example:6379/0",
	}},
	{"vpc, public key by SSM, customer KMS key, endpoints", true, map[string]string{
		"Network": "vpc", "SubnetIds": "subnet-1,subnet-2", "SecurityGroupIds": "sg-1",
		"SecretsEndpointsVpcId": "vpc-0abc", "RedisUrlSecret": "/orderstream/redis-url",
		"Auth": "public-key", "AuthJwtPublicKeyRef": "/orderstream/jwt-public-key", "SecretsKmsKeyArn": keyARN,
	}},
	{"internet behind CloudFront with a custom domain", false, map[string]string{
		"RedisUrlSecret": secretARN, "CloudFront": "on", "CustomDomainName": "orders.shop.example",
		"CertificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/1234abcd-12ab-34cd-56ef-1234567890ab",
	}},
	// Scenario 1 with ingest on: TestTemplateIngestOff compares the two.
	{"internet, plain Redis, ingest from a standard queue, JWKS auth", false, map[string]string{
		"RedisUrl": "rediss://cache.example:6379/0", "Ingest": "sqs",
		"Auth": "jwks", "AuthJwksUrl": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC/.well-known/jwks.json",
		"AuthJwtIssuer": "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC",
	}},
	{"vpc, ingest from FIFO queues on a custom bus, alarm to a topic", true, map[string]string{
		"Network": "vpc", "SubnetIds": "subnet-1,subnet-2", "SecurityGroupIds": "sg-1",
		"RedisUrlSecret": "/orderstream/redis-url", "Auth": "secret", "AuthJwtSecretRef": "/orderstream/jwt-secret",
		"Ingest": "sqs-fifo", "IngestEventBusName": "shop-orders", "IngestDetailType": "OrderUpdated",
		"IngestAlarmTopicArn": alarmTopic, "SetApiGatewayLogsRole": "yes",
	}},
}

const (
	ingestOff  = 1 // the scenario TestTemplateIngestOff turns on
	ingestSQS  = 4
	ingestFIFO = 5
	alarmTopic = "arn:aws:sns:eu-west-1:123456789012:orderstream-alarms"
)

// TestTemplateParameters: a guided deploy can take every default and never
// meets a hidden prompt (NoEcho parameters get one, with no default).
func TestTemplateParameters(t *testing.T) {
	c := transform(t, 0)
	for name, p := range c.Parameters {
		if p.NoEcho != nil {
			t.Errorf("parameter %s is NoEcho: sam deploy --guided asks it hidden, without its default", name)
		}
		if p.Default == nil {
			t.Errorf("parameter %s has no default", name)
		}
	}
	// RedisUrl refuses a password: that belongs in RedisUrlSecret.
	pattern := regexp.MustCompile(c.Parameters["RedisUrl"].AllowedPattern)
	for url, ok := range map[string]bool{
		"":                                       true,
		"rediss://cache.example:6379/0":          true,
		"redis://default@cache.example:6379":     true,
		"rediss://default:pw@cache.example:6379": false,
		"rediss://:pw@cache.example:6379/0":      false,
	} {
		if pattern.MatchString(url) != ok {
			t.Errorf("RedisUrl pattern on %q: match %v, want %v", url, !ok, ok)
		}
	}
	// A reference is what IAM will match: a secret's full ARN (with the 6
	// characters Secrets Manager appends), not a partial one.
	for _, name := range []string{"RedisUrlSecret", "AuthJwtSecretRef", "AuthJwtPublicKeyRef"} {
		pattern := regexp.MustCompile(c.Parameters[name].AllowedPattern)
		for ref, ok := range map[string]bool{
			"":        true,
			secretARN: true,
			"arn:aws:secretsmanager:eu-west-1:123456789012:secret:shop/prod/redis_url-x1Y2z3": true,
			"arn:aws-cn:secretsmanager:cn-north-1:123456789012:secret:orderstream-AbCdEf":     true,
			"/orderstream/redis-url": true,
			"arn:aws:secretsmanager:eu-west-1:123456789012:secret:orderstream/redis":         false, // partial
			"arn:aws:secretsmanager:eu-west-1:123456789012:secret:orderstream/redis-AbCdE":   false, // 5 characters
			"arn:aws:secretsmanager:eu-west-1:123456789012:secret:orderstream/redis-AbCdEf-": false,
			"arn:aws:secretsmanager:eu-west-1:123456789012:secret:orderstream/redis-AbCdEf*": false,
			"orderstream/redis-url": false, // a name, not an ARN
			"arn:aws:ssm:eu-west-1:123456789012:parameter/orderstream/redis-url": false,
		} {
			if pattern.MatchString(ref) != ok {
				t.Errorf("%s pattern on %q: match %v, want %v", name, ref, !ok, ok)
			}
		}
	}
}

// TestTemplateGuidedDefaults: sam deploy --guided with every default works on
// a new account: no reserved concurrency (Lambda keeps 100 of the quota
// unreserved, and a new account's quota can be 10, so any reservation fails
// there), and the account's one API Gateway logging role is left alone.
func TestTemplateGuidedDefaults(t *testing.T) {
	c := transform(t, 1)
	for name, p := range map[string]string{"StreamReservedConcurrency": "0", "ApiReservedConcurrency": "0", "SetApiGatewayLogsRole": "no", "Ingest": "none"} {
		if got := fmt.Sprint(c.Parameters[name].Default); got != p {
			t.Errorf("parameter %s defaults to %q, want %q", name, got, p)
		}
	}
	for name, fn := range c.ofType("AWS::Lambda::Function") {
		if v, ok := fn.Properties["ReservedConcurrentExecutions"]; ok {
			t.Errorf("%s reserves %v by default", name, v)
		}
	}
	// The vpc path with its defaults (scenario 2 leaves SetApiGatewayLogsRole).
	if r := transform(t, 2).ofType("AWS::ApiGateway::Account"); len(r) != 0 {
		t.Errorf("the vpc path sets the account's API Gateway logging role by default: %v", keys(r))
	}
	// Asked for, the role outlives the stack, so the account never points at a deleted one.
	withRole := transform(t, ingestFIFO)
	if role := withRole.Resources["ApiGatewayLogsRole"]; role.Type != "AWS::IAM::Role" || role.DeletionPolicy != "Retain" || len(withRole.ofType("AWS::ApiGateway::Account")) != 1 {
		t.Errorf("SetApiGatewayLogsRole=yes: logs role %+v, accounts %v", role, keys(withRole.ofType("AWS::ApiGateway::Account")))
	}
}

func TestTemplateFunctions(t *testing.T) {
	for i, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			c := transform(t, i)
			functions := c.ofType("AWS::Lambda::Function")
			wantFunctions := []string{"ApiFunction", "StreamFunction"}
			if sc.vpc {
				wantFunctions = []string{"ApiFunction", "VpcStreamFunction"}
			}
			if sc.params["Ingest"] != "" {
				wantFunctions = append([]string{wantFunctions[0], "IngestFunction"}, wantFunctions[1:]...)
			}
			if got := keys(functions); !slices.Equal(got, wantFunctions) {
				t.Fatalf("functions %v, want %v", got, wantFunctions)
			}
			reserved := 0.0
			for name, fn := range functions {
				checkEnvironment(t, name, fn)

				// Caps are reserved only when asked for (TestTemplateGuidedDefaults).
				v, ok := fn.Properties["ReservedConcurrentExecutions"]
				n := num(v, 0)
				if asked := sc.params["StreamReservedConcurrency"] != "" && name != "IngestFunction"; ok != asked || (ok && n <= 0) {
					t.Errorf("%s: reserved concurrency %v (set %v), asked for: %v", name, n, ok, asked)
				}
				reserved += n

				lg := c.Resources[refName(get(fn.Properties, "LoggingConfig", "LogGroup"))]
				if lg.Type != "AWS::Logs::LogGroup" || lg.Properties["RetentionInDays"] == nil {
					t.Errorf("%s: no log group with retention: %v", name, lg)
				}

				role := c.Resources[refName(fn.Properties["Role"])]
				policies := strings.Join(strs(role.Properties["ManagedPolicyArns"]), " ")
				inVpc := fn.Properties["VpcConfig"] != nil
				hasVpcPolicy := strings.Contains(policies, "awslambdavpcaccessexecutionrole")
				if inVpc != sc.vpc || hasVpcPolicy != sc.vpc {
					t.Errorf("%s: VpcConfig %v, VPC-access policy %v; want both %v", name, inVpc, hasVpcPolicy, sc.vpc)
				}

				if len(aliasesOf(c, name)) != 1 {
					t.Errorf("%s: want one alias (AutoPublishAlias)", name)
				}
			}
			if reserved > 900 {
				t.Errorf("reserved concurrency %v by default leaves less than the 100 unreserved Lambda requires of a 1,000 quota", reserved)
			}
		})
	}
}

// checkEnvironment: no secret in a function's environment, only references.
func checkEnvironment(t *testing.T, name string, fn resource) {
	t.Helper()
	env, _ := get(fn.Properties, "Environment", "Variables").(map[string]any)
	for _, k := range []string{"AUTH_JWT_SECRET", "AUTH_JWT_PUBLIC_KEY"} {
		if _, ok := env[k]; ok {
			t.Errorf("%s: %s in the environment: secrets go by reference (%s_REF)", name, k, k)
		}
	}
	if v, ok := env["REDIS_URL"].(string); ok {
		u, err := url.Parse(v)
		if err != nil {
			t.Errorf("%s: REDIS_URL %q: %v", name, v, err)
		} else if _, has := u.User.Password(); has {
			t.Errorf("%s: REDIS_URL holds a password", name)
		}
	}
	for k, v := range env {
		if s, ok := v.(string); ok && strings.HasSuffix(k, "_REF") && !strings.HasPrefix(s, "/") && !strings.HasPrefix(s, "arn:") {
			t.Errorf("%s: %s=%q is no reference", name, k, s)
		}
	}
	if env["REDIS_URL"] == nil && env["REDIS_URL_REF"] == nil {
		t.Errorf("%s: neither REDIS_URL nor REDIS_URL_REF", name)
	}
}

func aliasesOf(c cfn, fn string) []string {
	var a []string
	for name, r := range c.ofType("AWS::Lambda::Alias") {
		if refName(r.Properties["FunctionName"]) == fn {
			a = append(a, name)
		}
	}
	return a
}

func keys[V any](m map[string]V) []string {
	k := make([]string, 0, len(m))
	for name := range m {
		k = append(k, name)
	}
	slices.Sort(k)
	return k
}

// TestTemplateSecretsPolicy: the functions may read exactly the references
// named, from the store each is in, and decrypt only with a key named.
func TestTemplateSecretsPolicy(t *testing.T) {
	tests := []struct {
		scenario int
		want     map[string][]string // action: resources
	}{
		{0, map[string][]string{
			"secretsmanager:GetSecretValue": {secretARN},
			"ssm:GetParameter":              {"arn:aws:ssm:eu-west-1:123456789012:parameter/orderstream/jwt-secret"},
		}},
		{1, nil},
		{2, map[string][]string{
			"ssm:GetParameter": {
				"arn:aws:ssm:eu-west-1:123456789012:parameter/orderstream/redis-url",
				"arn:aws:ssm:eu-west-1:123456789012:parameter/orderstream/jwt-public-key",
			},
			"kms:Decrypt": {keyARN},
		}},
	}
	for _, tt := range tests {
		sc := scenarios[tt.scenario]
		t.Run(sc.name, func(t *testing.T) {
			c := transform(t, tt.scenario)
			policy, ok := c.Resources["SecretsReadPolicy"]
			if tt.want == nil {
				if ok {
					t.Errorf("a secrets policy with no secret to read: %v", policy)
				}
				return
			}
			got := map[string][]string{}
			statements, _ := get(policy.Properties, "PolicyDocument", "Statement").([]any)
			for _, s := range statements {
				action, _ := get(s, "Action").(string)
				var res []string
				switch r := get(s, "Resource").(type) {
				case string:
					res = []string{r}
				case []any:
					for _, x := range r {
						str, _ := x.(string)
						res = append(res, str)
					}
				}
				got[action] = res
			}
			if !mapsEqual(got, tt.want) {
				t.Errorf("secrets policy %v, want %v", got, tt.want)
			}
			for name, fn := range c.ofType("AWS::Lambda::Function") {
				role := c.Resources[refName(fn.Properties["Role"])]
				if !slices.ContainsFunc(role.Properties["ManagedPolicyArns"].([]any), func(p any) bool { return refName(p) == "SecretsReadPolicy" }) {
					t.Errorf("%s's role lacks SecretsReadPolicy", name)
				}
			}
			if sc.vpc {
				if ep := c.Resources["SsmEndpoint"]; ep.Type != "AWS::EC2::VPCEndpoint" || ep.Properties["PrivateDnsEnabled"] != true {
					t.Errorf("vpc path reading SSM: no SSM interface endpoint with private DNS: %v", ep)
				}
				if _, ok := c.Resources["SecretsManagerEndpoint"]; ok {
					t.Errorf("a Secrets Manager endpoint with no secret there")
				}
			}
		})
	}
}

func mapsEqual(a, b map[string][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// TestTemplateFunctionURL: the URL streams, targets the alias, carries both
// permissions a public URL needs (lambda:InvokeFunctionUrl, and since October
// 2025 lambda:InvokeFunction via the URL), and exposes the headers scripts read.
func TestTemplateFunctionURL(t *testing.T) {
	c := transform(t, 0)
	u := c.Resources["StreamFunctionUrl"]
	if u.Properties["InvokeMode"] != "RESPONSE_STREAM" {
		t.Errorf("InvokeMode %v", u.Properties["InvokeMode"])
	}
	target := refName(u.Properties["TargetFunctionArn"])
	if !slices.Contains(aliasesOf(c, "StreamFunction"), target) {
		t.Errorf("the URL targets %q, not the function's alias", target)
	}
	if invokeURL, invokeVia := urlPermissions(c, target, "*", "NONE"); !invokeURL || !invokeVia {
		t.Errorf("function URL permissions: InvokeFunctionUrl %v, InvokeFunction via URL %v; want both", invokeURL, invokeVia)
	}
	checkCORS(t, "function URL", get(u.Properties, "Cors", "ExposeHeaders"), get(u.Properties, "Cors", "AllowHeaders"))
	if u.Properties["AuthType"] != "NONE" || len(c.ofType("AWS::CloudFront::Distribution")) != 0 {
		t.Errorf("by default the URL is public with no CloudFront: AuthType %v, distributions %v", u.Properties["AuthType"], keys(c.ofType("AWS::CloudFront::Distribution")))
	}
	if p, _ := get(c.Resources["StreamFunction"].Properties, "Environment", "Variables", "FLUSH_PADDING").(float64); p <= 0 {
		t.Errorf("the function URL's streams are not padded by default (FLUSH_PADDING %v)", p)
	}
}

// urlPermissions tells whether principal may invoke the function URL of
// target (an alias) with authType, and invoke target through the URL.
func urlPermissions(c cfn, target, principal, authType string) (invokeURL, invokeVia bool) {
	for _, p := range c.ofType("AWS::Lambda::Permission") {
		if refName(p.Properties["FunctionName"]) != target || p.Properties["Principal"] != principal {
			continue
		}
		switch p.Properties["Action"] {
		case "lambda:InvokeFunctionUrl":
			invokeURL = invokeURL || p.Properties["FunctionUrlAuthType"] == authType
		case "lambda:InvokeFunction":
			invokeVia = invokeVia || p.Properties["InvokedViaFunctionUrl"] == true
		}
	}
	return invokeURL, invokeVia
}

// TestTemplateCloudFront: with CloudFront on, the URL takes only the
// distribution's signed requests (AWS_IAM, origin access control), nothing
// is public, and the distribution caches nothing and passes what the
// service reads.
func TestTemplateCloudFront(t *testing.T) {
	c := transform(t, 3)
	u := c.Resources["StreamFunctionUrl"]
	if u.Properties["AuthType"] != "AWS_IAM" {
		t.Errorf("behind CloudFront the URL's AuthType is %v, want AWS_IAM", u.Properties["AuthType"])
	}
	target := refName(u.Properties["TargetFunctionArn"])
	if invokeURL, invokeVia := urlPermissions(c, target, "*", "NONE"); invokeURL || invokeVia {
		t.Errorf("behind CloudFront the URL is still public")
	}
	if invokeURL, invokeVia := urlPermissions(c, target, "cloudfront.amazonaws.com", "AWS_IAM"); !invokeURL || !invokeVia {
		t.Errorf("CloudFront's permissions: InvokeFunctionUrl %v, InvokeFunction via URL %v; want both", invokeURL, invokeVia)
	}
	for name, p := range c.ofType("AWS::Lambda::Permission") {
		if p.Properties["Principal"] == "cloudfront.amazonaws.com" && !strings.Contains(fmt.Sprint(p.Properties["SourceArn"]), "StreamDistribution") {
			t.Errorf("%s: not limited to this stack's distribution: %v", name, p.Properties["SourceArn"])
		}
	}
	dist := get(c.Resources["StreamDistribution"].Properties, "DistributionConfig")
	origins, _ := get(dist, "Origins").([]any)
	if len(origins) != 1 || refName(get(origins[0], "OriginAccessControlId")) != "StreamOriginAccessControl" {
		t.Fatalf("distribution origins %v, want the URL with origin access control", origins)
	}
	if oac := get(c.Resources["StreamOriginAccessControl"].Properties, "OriginAccessControlConfig"); get(oac, "OriginAccessControlOriginType") != "lambda" || get(oac, "SigningBehavior") != "always" {
		t.Errorf("origin access control %v", oac)
	}
	behaviour := get(dist, "DefaultCacheBehavior")
	if get(behaviour, "CachePolicyId") != "4135ea2d-6df8-44a3-9df3-4b5a84be39ad" || !slices.Contains(strs(get(behaviour, "AllowedMethods")), "post") {
		t.Errorf("the distribution may cache or refuses POST: %v", behaviour)
	}
	if aliases := strs(get(dist, "Aliases")); !slices.Equal(aliases, []string{"orders.shop.example"}) || get(dist, "ViewerCertificate", "AcmCertificateArn") == nil {
		t.Errorf("custom domain: aliases %v, certificate %v", aliases, get(dist, "ViewerCertificate"))
	}
}

func checkCORS(t *testing.T, where string, expose, allow any) {
	t.Helper()
	for _, h := range []string{"retry-after", "www-authenticate", "location"} {
		if !slices.Contains(strs(expose), h) {
			t.Errorf("%s CORS does not expose %s: %v", where, h, expose)
		}
	}
	for _, h := range []string{"authorization", "content-type", "last-event-id", "idempotency-key", "x-orderstream-authorization", "x-amz-content-sha256"} {
		if !slices.Contains(strs(allow), h) {
			t.Errorf("%s CORS does not allow %s: %v", where, h, allow)
		}
	}
}

// TestTemplateGateways: CORS, throttling and access logs (to a log group
// with retention) on both gateways; the vpc path's REST API streams and
// leaves CORS to the core.
func TestTemplateGateways(t *testing.T) {
	for _, i := range []int{0, 2, ingestFIFO} {
		sc := scenarios[i]
		t.Run(sc.name, func(t *testing.T) {
			c := transform(t, i)
			cors := get(c.Resources["HttpApi"].Properties, "Body", "x-amazon-apigateway-cors")
			checkCORS(t, "HTTP API", get(cors, "exposeHeaders"), get(cors, "allowHeaders"))
			stages := c.ofType("AWS::ApiGatewayV2::Stage")
			if len(stages) != 1 {
				t.Fatalf("HTTP API stages %v", keys(stages))
			}
			for name, s := range stages {
				checkAccessLogs(t, c, name, get(s.Properties, "AccessLogSettings", "DestinationArn"))
				if get(s.Properties, "DefaultRouteSettings", "ThrottlingRateLimit") == nil || get(s.Properties, "DefaultRouteSettings", "ThrottlingBurstLimit") == nil {
					t.Errorf("%s: no throttling", name)
				}
			}
			rest := c.ofType("AWS::ApiGateway::Stage")
			if !sc.vpc {
				if len(rest) != 0 {
					t.Errorf("REST API stages on the internet path: %v", keys(rest))
				}
				return
			}
			if len(rest) != 1 {
				t.Fatalf("REST API stages %v, want one", keys(rest))
			}
			for name, s := range rest {
				checkAccessLogs(t, c, name, get(s.Properties, "AccessLogSetting", "DestinationArn"))
				ms, _ := s.Properties["MethodSettings"].([]any)
				if len(ms) == 0 || get(ms[0], "ThrottlingRateLimit") == nil || get(ms[0], "ResourcePath") != "/*" {
					t.Errorf("%s: no throttling on every method: %v", name, ms)
				}
			}
			// Access logs fail a stage created before the account's logs role,
			// when the stack sets it (SetApiGatewayLogsRole=yes).
			api := c.Resources["StreamRestApi"]
			account := c.Resources["ApiGatewayAccountReady"].Metadata["Account"]
			waitsFor := refName(account)
			if waitsFor == "" {
				waitsFor = fmt.Sprint(account)
			}
			want := "none"
			if sc.params["SetApiGatewayLogsRole"] == "yes" {
				want = "ApiGatewayAccount"
			}
			if api.DependsOn != "ApiGatewayAccountReady" || waitsFor != want {
				t.Errorf("the REST API does not wait for the account's logs role: DependsOn %v, waits for %v, want %s", api.DependsOn, waitsFor, want)
			}
			paths, _ := get(api.Properties, "Body", "paths").(map[string]any)
			if got := keys(paths); !slices.Equal(got, []string{"/", "/{proxy+}"}) {
				t.Errorf("REST API paths %v", got)
			}
			for p, item := range paths {
				integ := get(item, "x-amazon-apigateway-any-method", "x-amazon-apigateway-integration")
				uri, _ := get(integ, "uri", "Fn::Sub").(string)
				if get(integ, "responseTransferMode") != "STREAM" || !strings.Contains(uri, "/response-streaming-invocations") {
					t.Errorf("REST API %s does not stream: %v", p, integ)
				}
				// ANY covers OPTIONS: preflights reach the core, whose CORS is on.
				if len(item.(map[string]any)) != 1 {
					t.Errorf("REST API %s has methods beside ANY: %v", p, keys(item.(map[string]any)))
				}
			}
			env, _ := get(c.Resources["VpcStreamFunction"].Properties, "Environment", "Variables").(map[string]any)
			if env["CORS_ALLOWED_ORIGINS"] != "*" {
				t.Errorf("VpcStreamFunction CORS_ALLOWED_ORIGINS %v, want the AllowedOrigins default *", env["CORS_ALLOWED_ORIGINS"])
			}
		})
	}
}

func checkAccessLogs(t *testing.T, c cfn, stage string, dest any) {
	t.Helper()
	lg := c.Resources[refName(dest)]
	if lg.Type != "AWS::Logs::LogGroup" || lg.Properties["RetentionInDays"] == nil {
		t.Errorf("%s: access logs go to %v, not a log group with retention", stage, dest)
	}
}

// TestTemplateDeploymentFollowsMethods: the REST API's deployment is a new
// resource whenever its methods change; a fixed one would never redeploy
// them.
func TestTemplateDeploymentFollowsMethods(t *testing.T) {
	deployment := func(c cfn) string {
		d := keys(c.ofType("AWS::ApiGateway::Deployment"))
		if len(d) != 1 {
			t.Fatalf("deployments %v", d)
		}
		for _, s := range c.ofType("AWS::ApiGateway::Stage") {
			if refName(s.Properties["DeploymentId"]) != d[0] {
				t.Errorf("the stage deploys %v, not %s", s.Properties["DeploymentId"], d[0])
			}
		}
		return d[0]
	}
	before, after := deployment(transform(t, 2)), deployment(transform(t, len(scenarios)))
	if before == after {
		t.Errorf("the deployment %s stays the same when a method changes", before)
	}
}

// TestGuidedWalkthrough: functions/README.md's table of sam deploy --guided
// prompts names every parameter, in the template's order, which is the order
// SAM CLI asks them in, each with its default.
func TestGuidedWalkthrough(t *testing.T) {
	src, err := os.ReadFile(templatePath)
	if err != nil {
		t.Fatal(err)
	}
	var template []string
	in := false
	for _, line := range strings.Split(string(src), "\n") {
		switch {
		case line == "Parameters:":
			in = true
		case in && len(line) > 0 && line[0] != ' ' && line[0] != '#':
			in = false
		case in && regexp.MustCompile(`^  [A-Za-z0-9]+:$`).MatchString(line):
			template = append(template, strings.TrimSuffix(strings.TrimSpace(line), ":"))
		}
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	defaults := transform(t, 0).Parameters
	var prompted []string
	prompt := regexp.MustCompile("`(?:Parameter )?([A-Za-z0-9]+) \\[([^\\]]*)\\]`")
	for _, line := range strings.Split(string(readme), "\n") {
		if !strings.HasPrefix(line, "| `Parameter ") {
			continue
		}
		cell, _, _ := strings.Cut(strings.TrimPrefix(line, "| "), " | ")
		for _, m := range prompt.FindAllStringSubmatch(cell, -1) {
			prompted = append(prompted, m[1])
			if def := fmt.Sprint(defaults[m[1]].Default); def != m[2] {
				t.Errorf("README prompt %s [%s]: the template's default is %q", m[1], m[2], def)
			}
		}
	}
	if !slices.Equal(prompted, template) {
		t.Errorf("README's guided prompts %v\nthe template's parameters %v", prompted, template)
	}
}

// TestTemplateIngest: with Ingest on, the queue, its dead-letter queue and
// redrive, an alarm on the dead letters, the visibility timeout Lambda asks
// for, the event source mapping reporting batch item failures with a
// concurrency cap, the EventBridge rule and the queue policy that lets only
// it send, and a role that may touch exactly the queue and the log group.
func TestTemplateIngest(t *testing.T) {
	for _, i := range []int{ingestSQS, ingestFIFO} {
		sc := scenarios[i]
		fifo := sc.params["Ingest"] == "sqs-fifo"
		t.Run(sc.name, func(t *testing.T) {
			c := transform(t, i)
			queue, dlq := c.Resources["IngestQueue"], c.Resources["IngestDeadLetterQueue"]
			if queue.Type != "AWS::SQS::Queue" || dlq.Type != "AWS::SQS::Queue" {
				t.Fatalf("queues: %v, %v", queue, dlq)
			}
			if refName(get(queue.Properties, "RedrivePolicy", "deadLetterTargetArn")) != "IngestDeadLetterQueue" {
				t.Errorf("the queue's redrive goes to %v", get(queue.Properties, "RedrivePolicy"))
			}
			if n, _ := get(queue.Properties, "RedrivePolicy", "maxReceiveCount").(float64); n < 3 {
				t.Errorf("maxReceiveCount %v: a broker's short outage would send messages to the dead-letter queue", n)
			}
			if queueRetention, dlqRetention := num(queue.Properties["MessageRetentionPeriod"], 345600), num(dlq.Properties["MessageRetentionPeriod"], 345600); dlqRetention <= queueRetention {
				t.Errorf("dead letters kept %v s, messages %v s: a dead letter would expire before its original", dlqRetention, queueRetention)
			}
			for name, q := range map[string]resource{"queue": queue, "dead-letter queue": dlq} {
				name := name
				isFifo := q.Properties["FifoQueue"] == true
				qn, _ := q.Properties["QueueName"].(string)
				if isFifo != fifo || (fifo && !strings.HasSuffix(qn, ".fifo")) {
					t.Errorf("%s: FifoQueue %v, name %q; Ingest %s", name, q.Properties["FifoQueue"], qn, sc.params["Ingest"])
				}
				if q.Properties["SqsManagedSseEnabled"] != true {
					t.Errorf("%s is not encrypted at rest", name)
				}
			}
			if fifo && queue.Properties["ContentBasedDeduplication"] != true {
				t.Errorf("a FIFO queue without content-based deduplication takes no EventBridge events")
			}

			alarm := c.Resources["IngestDeadLetterAlarm"]
			dims, _ := alarm.Properties["Dimensions"].([]any)
			if alarm.Type != "AWS::CloudWatch::Alarm" || alarm.Properties["Namespace"] != "AWS/SQS" || len(dims) != 1 ||
				refName(get(dims[0], "Value")) != "IngestDeadLetterQueue" || alarm.Properties["Threshold"] != 0.0 ||
				alarm.Properties["ComparisonOperator"] != "GreaterThanThreshold" {
				t.Errorf("no alarm on the dead-letter queue's depth: %v", alarm)
			}
			if actions := fmt.Sprint(alarm.Properties["AlarmActions"]); (sc.params["IngestAlarmTopicArn"] != "") != strings.Contains(actions, alarmTopic) {
				t.Errorf("alarm actions %v with IngestAlarmTopicArn %q", actions, sc.params["IngestAlarmTopicArn"])
			}

			fn := c.Resources["IngestFunction"]
			timeout := num(fn.Properties["Timeout"], 3)
			maxWindow := num(c.Parameters["IngestBatchWindow"].MaxValue, 0)
			if v := num(queue.Properties["VisibilityTimeout"], 30); v < 6*timeout+maxWindow {
				t.Errorf("visibility timeout %v s, under 6 × the function's %v s + the longest batching window %v s", v, timeout, maxWindow)
			}
			mappings := c.ofType("AWS::Lambda::EventSourceMapping")
			if len(mappings) != 1 {
				t.Fatalf("event source mappings %v", keys(mappings))
			}
			for _, m := range mappings {
				p := m.Properties
				if refName(p["EventSourceArn"]) != "IngestQueue" || !slices.Contains(aliasesOf(c, "IngestFunction"), refName(p["FunctionName"])) {
					t.Errorf("the mapping reads %v into %v, not the queue into the function's alias", p["EventSourceArn"], p["FunctionName"])
				}
				if !slices.Equal(strs(p["FunctionResponseTypes"]), []string{"reportbatchitemfailures"}) {
					t.Errorf("FunctionResponseTypes %v: failed messages would fail the whole batch", p["FunctionResponseTypes"])
				}
				if n := num(get(p, "ScalingConfig", "MaximumConcurrency"), 0); n < 2 || n > 10 {
					t.Errorf("MaximumConcurrency %v by default, want a few (each invocation holds Redis connections)", n)
				}
				if n := num(p["BatchSize"], 0); n < 1 || n > 10 {
					t.Errorf("BatchSize %v", n)
				}
				if _, has := p["MaximumBatchingWindowInSeconds"]; has == fifo {
					t.Errorf("MaximumBatchingWindowInSeconds %v on Ingest %s (FIFO queues take none)", p["MaximumBatchingWindowInSeconds"], sc.params["Ingest"])
				}
			}
			env, _ := get(fn.Properties, "Environment", "Variables").(map[string]any)
			for _, k := range []string{"AUTH_JWT_SECRET_REF", "AUTH_JWT_PUBLIC_KEY_REF", "AUTH_JWKS_URL"} {
				if _, ok := env[k]; ok {
					t.Errorf("IngestFunction has %s: it checks no token", k)
				}
			}

			// The role: the queue and the log group, and nothing else of its own.
			role := c.Resources[refName(fn.Properties["Role"])]
			if role.Type != "AWS::IAM::Role" {
				t.Fatalf("IngestFunction's role %v", fn.Properties["Role"])
			}
			grants := map[string]string{}
			policies, _ := role.Properties["Policies"].([]any)
			for _, p := range policies {
				statements, _ := get(p, "PolicyDocument", "Statement").([]any)
				for _, st := range statements {
					for _, a := range strs(get(st, "Action")) {
						grants[a] = refName(get(st, "Resource"))
					}
				}
			}
			want := map[string]string{
				"sqs:receivemessage": "IngestQueue", "sqs:deletemessage": "IngestQueue", "sqs:getqueueattributes": "IngestQueue",
				"logs:createlogstream": "IngestLogGroup", "logs:putlogevents": "IngestLogGroup",
			}
			if !maps.Equal(grants, want) {
				t.Errorf("IngestFunction's role grants %v, want exactly %v", grants, want)
			}
			var managed []string
			for _, m := range role.Properties["ManagedPolicyArns"].([]any) {
				if s, ok := m.(string); ok {
					managed = append(managed, s[strings.LastIndex(s, "/")+1:])
				} else {
					managed = append(managed, refName(m))
				}
			}
			var wantManaged []string
			if sc.vpc {
				wantManaged = append(wantManaged, "AWSLambdaVPCAccessExecutionRole")
			}
			if sc.params["RedisUrlSecret"] != "" { // the only secret it reads
				wantManaged = append(wantManaged, "SecretsReadPolicy")
			}
			if !slices.Equal(managed, wantManaged) {
				t.Errorf("IngestFunction's managed policies %v, want %v", managed, wantManaged)
			}

			rule := c.Resources["IngestRule"]
			bus := sc.params["IngestEventBusName"]
			if bus == "" {
				bus = "default"
			}
			detailType := sc.params["IngestDetailType"]
			if detailType == "" {
				detailType = "OrderStatusChanged"
			}
			if rule.Properties["EventBusName"] != bus || !slices.Equal(strs(get(rule.Properties, "EventPattern", "detail-type")), []string{strings.ToLower(detailType)}) {
				t.Errorf("rule on bus %v matching %v, want %s and %s", rule.Properties["EventBusName"], get(rule.Properties, "EventPattern"), bus, detailType)
			}
			targets, _ := rule.Properties["Targets"].([]any)
			if len(targets) != 1 || refName(get(targets[0], "Arn")) != "IngestQueue" {
				t.Fatalf("rule targets %v, want the queue", targets)
			}
			if group := get(targets[0], "SqsParameters", "MessageGroupId"); (group != nil) != fifo {
				t.Errorf("the rule's message group %v on Ingest %s", group, sc.params["Ingest"])
			}
			policy := c.Resources["IngestQueuePolicy"]
			statements, _ := get(policy.Properties, "PolicyDocument", "Statement").([]any)
			queues, _ := policy.Properties["Queues"].([]any)
			if len(statements) != 1 || len(queues) != 1 || refName(queues[0]) != "IngestQueue" ||
				get(statements[0], "Principal", "Service") != "events.amazonaws.com" || get(statements[0], "Action") != "sqs:SendMessage" ||
				refName(get(statements[0], "Condition", "ArnEquals", "aws:SourceArn")) != "IngestRule" {
				t.Errorf("the queue policy does not let exactly the rule send: %v", policy.Properties)
			}
		})
	}
}

// TestTemplateIngestOff: Ingest=none (the default) leaves the template as it
// was before ingest existed: nothing named for it, no reference to it, and
// every resource and output exactly as with ingest on, which only adds.
func TestTemplateIngestOff(t *testing.T) {
	off, on := transform(t, ingestOff), transform(t, ingestSQS)
	raw, err := json.Marshal(off)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(strings.ReplaceAll(string(raw), `"Ingest`, `"`), "Ingest") || strings.Contains(strings.ToLower(string(raw)), "sqs") {
		for name := range off.Resources {
			if strings.Contains(name, "Ingest") {
				t.Errorf("Ingest=none has %s", name)
			}
		}
		t.Errorf("Ingest=none mentions ingest or SQS beyond its parameters")
	}
	if len(off.ofType("AWS::SQS::Queue"))+len(off.ofType("AWS::Events::Rule"))+len(off.ofType("AWS::Lambda::EventSourceMapping"))+len(off.ofType("AWS::CloudWatch::Alarm")) != 0 {
		t.Errorf("Ingest=none creates queues, rules, mappings or alarms")
	}
	// Scenario ingestSQS is ingestOff with ingest on, and JWKS auth: the
	// functions' environments and the parameters differ by that, nothing else may.
	for name, r := range off.Resources {
		o, ok := on.Resources[name]
		if !ok {
			t.Errorf("%s is gone with ingest on", name)
			continue
		}
		if r.Type == "AWS::Lambda::Function" {
			r, o = withoutAuthEnv(r), withoutAuthEnv(o)
		}
		if a, b := mustJSON(t, r), mustJSON(t, o); a != b && !strings.HasPrefix(name, "ApiFunctionVersion") && !strings.HasPrefix(name, "StreamFunctionVersion") {
			t.Errorf("%s differs with ingest on:\n%s\n%s", name, a, b)
		}
	}
	var added []string
	for name := range on.Resources {
		if _, ok := off.Resources[name]; !ok {
			added = append(added, name)
			if !strings.HasPrefix(name, "Ingest") {
				t.Errorf("ingest adds %s, which is not named for it", name)
			}
		}
	}
	if len(added) == 0 {
		t.Errorf("ingest on adds nothing")
	}
	for name := range off.Outputs {
		if strings.HasPrefix(name, "Ingest") {
			t.Errorf("Ingest=none outputs %s", name)
		}
	}
	if on.Outputs["IngestQueueUrl"] == nil || on.Outputs["IngestDeadLetterQueueUrl"] == nil {
		t.Errorf("ingest on: no queue URLs in the outputs: %v", keys(on.Outputs))
	}
}

// withoutAuthEnv is a function resource without the AUTH_* settings (and the
// version they make SAM name), which the ingest scenario changes on purpose.
func withoutAuthEnv(r resource) resource {
	props := map[string]any{}
	for k, v := range r.Properties {
		props[k] = v
	}
	if vars, ok := get(props, "Environment", "Variables").(map[string]any); ok {
		kept := map[string]any{}
		for k, v := range vars {
			if !strings.HasPrefix(k, "AUTH_") {
				kept[k] = v
			}
		}
		props["Environment"] = map[string]any{"Variables": kept}
	}
	r.Properties = props
	return r
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// num is a resolved number property, or def when it is absent.
func num(v any, def float64) float64 {
	switch n := v.(type) {
	case float64:
		return n
	case string:
		var f float64
		if _, err := fmt.Sscan(n, &f); err == nil {
			return f
		}
	}
	return def
}

// TestTemplateJWKS: Auth=jwks gives the stream and API functions the JWKS URL
// and the issuer, and reads no secret for them.
func TestTemplateJWKS(t *testing.T) {
	c := transform(t, ingestSQS)
	for _, name := range []string{"StreamFunction", "ApiFunction"} {
		env, _ := get(c.Resources[name].Properties, "Environment", "Variables").(map[string]any)
		if env["AUTH_JWKS_URL"] != scenarios[ingestSQS].params["AuthJwksUrl"] || env["AUTH_JWT_ISSUER"] != scenarios[ingestSQS].params["AuthJwtIssuer"] {
			t.Errorf("%s: AUTH_JWKS_URL %v, AUTH_JWT_ISSUER %v", name, env["AUTH_JWKS_URL"], env["AUTH_JWT_ISSUER"])
		}
		if _, ok := env["AUTH_JWT_AUDIENCE"]; ok {
			t.Errorf("%s: AUTH_JWT_AUDIENCE set though AuthJwtAudience is empty", name)
		}
	}
	if _, ok := c.Resources["SecretsReadPolicy"]; ok {
		t.Errorf("JWKS auth with a plain Redis reads secrets")
	}
	pattern := regexp.MustCompile(c.Parameters["AuthJwksUrl"].AllowedPattern)
	for u, ok := range map[string]bool{"": true, "https://idp.example/.well-known/jwks.json": true, "http://idp.example/jwks": false, "https://a b": false} {
		if pattern.MatchString(u) != ok {
			t.Errorf("AuthJwksUrl pattern on %q: match %v, want %v", u, !ok, ok)
		}
	}
}
