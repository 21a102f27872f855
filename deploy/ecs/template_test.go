// Package ecs holds the tests of deploy/ecs/template.yaml: resolved for
// several parameter sets as CloudFormation would (cfn_test.go), each held to
// the rules that tie the load balancer, ECS, the image and the service's
// settings together (deploy/README.md, "Settings that must agree");
// `make ecs-lint` runs cfn-lint on the same file.
package ecs

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/orderstream/orderstream/deploy/image"
	"github.com/orderstream/orderstream/deploy/layers"
)

const (
	templatePath = "template.yaml"
	secretARN    = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:orderstream/redis-AbCdEf"
	jwtARN       = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:orderstream/jwt-key-AbCdEf"
	keyARN       = "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
)

// required are the parameters with no sensible default: what a deploy must name.
var required = map[string]any{
	"ImageUri":        "123456789012.dkr.ecr.eu-west-1.amazonaws.com/orderstream:v1.2.3",
	"VpcId":           "vpc-0abc",
	"PublicSubnetIds": "subnet-a,subnet-b",
	"TaskSubnetIds":   "subnet-c,subnet-d",
	"CertificateArn":  "arn:aws:acm:eu-west-1:123456789012:certificate/1234abcd-12ab-34cd-56ef-1234567890ab",
}

func with(extra map[string]any) map[string]any {
	m := map[string]any{}
	for k, v := range required {
		m[k] = v
	}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

var scenarios = []struct {
	name    string
	params  map[string]any
	secrets map[string]string // the container's Secrets: name -> ValueFrom
	reads   map[string][]string
	env     map[string]string // settings the parameters name: "" for must be absent
}{
	{"Redis URL in Secrets Manager, defaults", with(map[string]any{"RedisUrlSecret": secretARN}),
		map[string]string{"REDIS_URL": secretARN},
		map[string][]string{"secretsmanager:GetSecretValue": {secretARN}},
		map[string]string{"AUTH_JWT_SECRET": "", "AUTH_JWKS_URL": "", "AUTH_JWT_ISSUER": "", "CORS_ALLOWED_ORIGINS": ""}},
	{"Redis URL and JWT secret in SSM, a customer KMS key, cluster, 2m lifetime", with(map[string]any{
		"RedisUrlSecret": "/orderstream/redis-url", "Auth": "secret", "AuthJwtSecretRef": "/orderstream/jwt-secret",
		"SecretsKmsKeyArn": keyARN, "RedisCluster": "true", "StreamLifetime": "2m",
	}),
		map[string]string{
			"REDIS_URL":       "arn:aws:ssm:eu-west-1:123456789012:parameter/orderstream/redis-url",
			"AUTH_JWT_SECRET": "arn:aws:ssm:eu-west-1:123456789012:parameter/orderstream/jwt-secret",
		},
		map[string][]string{
			"ssm:GetParameters": {"arn:aws:ssm:eu-west-1:123456789012:parameter/orderstream/redis-url", "arn:aws:ssm:eu-west-1:123456789012:parameter/orderstream/jwt-secret"},
			"kms:Decrypt":       {keyARN},
		},
		map[string]string{"AUTH_JWKS_URL": "", "REDIS_CLUSTER": "true"}},
	{"plain Redis without a password, public key in Secrets Manager, x86, 15m lifetime", with(map[string]any{
		"RedisUrl": "rediss://cache.example:6379/0", "Auth": "public-key", "AuthJwtPublicKeyRef": jwtARN,
		"CpuArchitecture": "X86_64", "StreamLifetime": "15m", "AllowedOrigins": "https://shop.example",
	}),
		map[string]string{"AUTH_JWT_PUBLIC_KEY": jwtARN},
		map[string][]string{"secretsmanager:GetSecretValue": {jwtARN}},
		map[string]string{"CORS_ALLOWED_ORIGINS": "https://shop.example", "AUTH_JWKS_URL": "", "AUTH_JWT_ISSUER": ""}},
	{"an identity provider's rotating keys (Cognito), tokens for one app", with(map[string]any{
		"RedisUrlSecret": secretARN, "Auth": "jwks",
		"AuthJwksUrl":     "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC/.well-known/jwks.json",
		"AuthJwtIssuer":   "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC",
		"AuthJwtAudience": "shop-app",
	}),
		map[string]string{"REDIS_URL": secretARN},
		map[string][]string{"secretsmanager:GetSecretValue": {secretARN}},
		map[string]string{
			"AUTH_JWKS_URL":     "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC/.well-known/jwks.json",
			"AUTH_JWT_ISSUER":   "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC",
			"AUTH_JWT_AUDIENCE": "shop-app",
			"AUTH_JWT_SECRET":   "", "AUTH_JWT_PUBLIC_KEY": "",
		}},
}

func (tpl template) only(t *testing.T, typ string) (string, resource) {
	t.Helper()
	var names []string
	for name, r := range tpl.Resources {
		if r.Type == typ {
			names = append(names, name)
		}
	}
	if len(names) != 1 {
		t.Fatalf("%d resources of type %s (%v), want 1", len(names), typ, names)
	}
	return names[0], tpl.Resources[names[0]]
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

func refName(v any) string {
	if r, ok := get(v, "Ref").(string); ok {
		return r
	}
	if g, ok := get(v, "Fn::GetAtt").([]any); ok && len(g) > 0 {
		s, _ := g[0].(string)
		return s
	}
	return ""
}

// attributes turns a [{Key, Value}] list into a map.
func attributes(v any) map[string]string {
	m := map[string]string{}
	l, _ := v.([]any)
	for _, x := range l {
		k, _ := get(x, "Key").(string)
		val, _ := get(x, "Value").(string)
		m[k] = val
	}
	return m
}

// nameValues turns a [{Name, <field>}] list into a map.
func nameValues(v any, field string) map[string]string {
	m := map[string]string{}
	l, _ := v.([]any)
	for _, x := range l {
		k, _ := get(x, "Name").(string)
		m[k] = fmt.Sprint(get(x, field))
	}
	return m
}

func seconds(t *testing.T, s string) time.Duration {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("%q: not whole seconds", s)
	}
	return time.Duration(n) * time.Second
}

func duration(t *testing.T, s string) time.Duration {
	t.Helper()
	d, err := layers.Duration(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func container(t *testing.T, tpl template) map[string]any {
	t.Helper()
	_, td := tpl.only(t, "AWS::ECS::TaskDefinition")
	defs, _ := td.Properties["ContainerDefinitions"].([]any)
	if len(defs) != 1 {
		t.Fatalf("%d containers, want 1", len(defs))
	}
	return defs[0].(map[string]any)
}

// TestParameters: a deploy names only what has no sensible default, and
// no parameter asks for a secret's value.
func TestParameters(t *testing.T) {
	tpl := loadTemplate(t, templatePath, with(map[string]any{"RedisUrlSecret": secretARN}))
	for name, p := range tpl.Parameters {
		if _, req := required[name]; req == p.HasDefault {
			t.Errorf("parameter %s: default %v, required %v; want exactly the required ones without a default", name, p.HasDefault, req)
		}
		if p.NoEcho != "" {
			t.Errorf("parameter %s is NoEcho: secrets go by reference (RedisUrlSecret, Auth*Ref)", name)
		}
	}
	images := regexp.MustCompile(tpl.Parameters["ImageUri"].AllowedPattern)
	for ref, ok := range map[string]bool{
		"123456789012.dkr.ecr.eu-west-1.amazonaws.com/orderstream:v1.2.3": true,
		"ghcr.io/you/orderstream:f599b39-dirty":                           true,
		"ghcr.io/you/orderstream@sha256:" + strings.Repeat("ab", 32):      true,
		"localhost:5000/orderstream:dev":                                  true,
		"orderstream":                                                     false, // Docker Hub by default: not what make image pushed
		"ghcr.io/you/orderstream":                                         false, // no tag: "latest" moves under a running service
	} {
		if images.MatchString(ref) != ok {
			t.Errorf("ImageUri %q: match %v, want %v", ref, !ok, ok)
		}
	}
	redis := regexp.MustCompile(tpl.Parameters["RedisUrl"].AllowedPattern)
	for u, ok := range map[string]bool{
		"rediss://cache.example:6379/0":                           true,
		"redis://default@cache.example:6379":                      true,
		"redis://seed:6379?addr=10.0.0.2:6379&addr=10.0.0.3:6379": true,
		"rediss://default:pw@cache.example:6379":                  false,
	} {
		if redis.MatchString(u) != ok {
			t.Errorf("RedisUrl %q: match %v, want %v", u, !ok, ok)
		}
	}
}

// TestCrossLayerRules: each rule of deploy/README.md's table, for every
// scenario.
func TestCrossLayerRules(t *testing.T) {
	grace, err := layers.ShutdownGrace()
	if err != nil {
		t.Fatal(err)
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			tpl := loadTemplate(t, templatePath, sc.params)
			c := container(t, tpl)
			env := nameValues(c["Environment"], "Value")
			heartbeat := duration(t, env["HEARTBEAT_INTERVAL"])
			drain := duration(t, env["SHUTDOWN_DRAIN"])
			lifetime := duration(t, env["MAX_STREAM_DURATION"])
			maxHeartbeat := seconds(t, tpl.Parameters["HeartbeatSeconds"].MaxValue)
			maxDrain := seconds(t, tpl.Parameters["ShutdownDrainSeconds"].MaxValue)

			// Heartbeat < the load balancer's idle timeout, with room for a late one.
			_, lb := tpl.only(t, "AWS::ElasticLoadBalancingV2::LoadBalancer")
			lbAttrs := attributes(lb.Properties["LoadBalancerAttributes"])
			idle := seconds(t, lbAttrs["idle_timeout.timeout_seconds"])
			if 2*maxHeartbeat > idle || heartbeat >= idle {
				t.Errorf("heartbeat %v (at most %v) against the ALB's idle timeout %v: want at most half", heartbeat, maxHeartbeat, idle)
			}
			if lbAttrs["routing.http2.enabled"] != "true" {
				t.Errorf("HTTP/2 toward clients off: %v", lbAttrs)
			}

			// Targets over HTTP/1.1 on the image's port, health on /healthz.
			tgName, tg := tpl.only(t, "AWS::ElasticLoadBalancingV2::TargetGroup")
			p := tg.Properties
			if p["ProtocolVersion"] != "HTTP1" || p["Protocol"] != "HTTP" || p["TargetType"] != "ip" {
				t.Errorf("target group %v %v %v: want HTTP, HTTP1, ip (Fargate)", p["Protocol"], p["ProtocolVersion"], p["TargetType"])
			}
			if p["HealthCheckPath"] != "/healthz" || get(p, "Matcher", "HttpCode") != "200" {
				t.Errorf("health check %v %v, want /healthz answering 200", p["HealthCheckPath"], get(p, "Matcher"))
			}
			interval, timeout := seconds(t, p["HealthCheckIntervalSeconds"].(string)), seconds(t, p["HealthCheckTimeoutSeconds"].(string))
			unhealthy, _ := strconv.Atoi(p["UnhealthyThresholdCount"].(string))
			if timeout >= interval || interval*time.Duration(unhealthy) > 15*time.Second {
				t.Errorf("a task answering 503 leaves rotation after %v (interval %v, timeout %v): want within 15 s", interval*time.Duration(unhealthy), interval, timeout)
			}
			if port := p["Port"]; port != strconv.Itoa(image.Port) {
				t.Errorf("target port %v, the image listens on %d", port, image.Port)
			}
			tgAttrs := attributes(p["TargetGroupAttributes"])
			dereg := seconds(t, tgAttrs["deregistration_delay.timeout_seconds"])
			// Every stream on a deregistered task ends by itself, and so
			// does the longest request (a simulation), before the ALB cuts.
			if dereg < lifetime+60*time.Second || dereg < drain {
				t.Errorf("deregistration delay %v: want at least MAX_STREAM_DURATION (%v) + 60 s and SHUTDOWN_DRAIN (%v)", dereg, lifetime, drain)
			}
			if dereg > time.Hour {
				t.Errorf("deregistration delay %v over the ALB's maximum (3600 s)", dereg)
			}
			if tgAttrs["load_balancing.algorithm.type"] != "least_outstanding_requests" {
				t.Errorf("algorithm %q: round robin piles new streams on a task regardless of what it holds", tgAttrs["load_balancing.algorithm.type"])
			}

			// SIGTERM -> drain -> grace -> exit, inside stopTimeout.
			stop := seconds(t, c["StopTimeout"].(string))
			if stop > 120*time.Second || stop < maxDrain+grace+5*time.Second {
				t.Errorf("stopTimeout %v: want at most Fargate's 120 s and over the longest SHUTDOWN_DRAIN (%v) + the %v grace", stop, maxDrain, grace)
			}

			// The container: the image's user, port and a read-only root.
			if c["User"] != fmt.Sprintf("%d:%d", image.UID, image.GID) || c["ReadonlyRootFilesystem"] != "true" {
				t.Errorf("User %v ReadonlyRootFilesystem %v: want the image's %d:%d and true", c["User"], c["ReadonlyRootFilesystem"], image.UID, image.GID)
			}
			ports, _ := c["PortMappings"].([]any)
			if len(ports) != 1 || get(ports[0], "ContainerPort") != strconv.Itoa(image.Port) || env["ADDR"] != fmt.Sprintf(":%d", image.Port) {
				t.Errorf("PortMappings %v ADDR %q: want the image's %d", ports, env["ADDR"], image.Port)
			}

			// Stream cap < file limit; memory for the cap.
			nofile := nameValues(c["Ulimits"], "SoftLimit")["nofile"]
			soft, _ := strconv.Atoi(nofile)
			maxStreams, _ := strconv.Atoi(tpl.Parameters["MaxStreamsPerTask"].MaxValue)
			if soft < maxStreams+layers.FDHeadroom {
				t.Errorf("nofile %d: under MaxStreamsPerTask's most (%d) + %d", soft, maxStreams, layers.FDHeadroom)
			}
			minMemory := slices.MinFunc(tpl.Parameters["TaskMemory"].AllowedValues, func(a, b string) int { x, _ := strconv.Atoi(a); y, _ := strconv.Atoi(b); return x - y })
			mib, _ := strconv.Atoi(minMemory)
			if need := layers.MemoryFor(maxStreams); int64(mib)<<20 < need {
				t.Errorf("the smallest task (%d MiB) cannot hold MaxStreamsPerTask's most (%d streams: %d MiB)", mib, maxStreams, need>>20)
			}
			target, _ := strconv.Atoi(tpl.Parameters["StreamsPerTaskTarget"].Default)
			defMax, _ := strconv.Atoi(env["MAX_STREAMS"])
			if target*3 > defMax*2 {
				t.Errorf("default scaling target %d streams per task against MAX_STREAMS %d: want a third of room for a reconnect storm", target, defMax)
			}

			checkSecrets(t, tpl, c, env, sc.secrets, sc.reads)
			for name, want := range sc.env {
				if got, ok := env[name]; got != want || ok != (want != "") {
					t.Errorf("environment %s = %q (set: %v), want %q", name, got, ok, want)
				}
			}
			checkScaling(t, tpl, env)

			// Logs kept, and the container's go to them.
			lgName, lg := tpl.only(t, "AWS::Logs::LogGroup")
			if lg.Properties["RetentionInDays"] == nil {
				t.Errorf("log group without retention")
			}
			opts, _ := get(c, "LogConfiguration", "Options").(map[string]any)
			if get(c, "LogConfiguration", "LogDriver") != "awslogs" || refName(opts["awslogs-group"]) != lgName {
				t.Errorf("logs: %v, want awslogs to %s (EMF lines become metrics only from CloudWatch Logs)", get(c, "LogConfiguration"), lgName)
			}

			checkListeners(t, tpl, tgName)
			checkService(t, tpl, tgName)
		})
	}
}

// checkSecrets: references only, read by the execution role, and exactly
// the ones named.
func checkSecrets(t *testing.T, tpl template, c map[string]any, env, want map[string]string, reads map[string][]string) {
	t.Helper()
	got := nameValues(c["Secrets"], "ValueFrom")
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("container secrets %v, want %v", got, want)
	}
	for name := range got {
		if _, plain := env[name]; plain {
			t.Errorf("%s is both a secret and in the plain environment", name)
		}
	}
	for _, k := range []string{"AUTH_JWT_SECRET", "AUTH_JWT_PUBLIC_KEY"} {
		if _, ok := env[k]; ok {
			t.Errorf("%s in the plain environment", k)
		}
	}
	if v, ok := env["REDIS_URL"]; ok {
		if u, err := url.Parse(v); err != nil {
			t.Errorf("REDIS_URL %q: %v", v, err)
		} else if _, has := u.User.Password(); has {
			t.Errorf("REDIS_URL in the plain environment holds a password")
		}
	} else if _, ok := got["REDIS_URL"]; !ok {
		t.Errorf("no REDIS_URL, plain or secret: tasks would not share orders")
	}
	_, td := tpl.only(t, "AWS::ECS::TaskDefinition")
	role := tpl.Resources[refName(td.Properties["ExecutionRoleArn"])]
	gotReads := map[string][]string{}
	policies, _ := role.Properties["Policies"].([]any)
	for _, pol := range policies {
		statements, _ := get(pol, "PolicyDocument", "Statement").([]any)
		for _, s := range statements {
			action := fmt.Sprint(get(s, "Action"))
			var res []string
			switch r := get(s, "Resource").(type) {
			case string:
				res = []string{r}
			case []any:
				for _, x := range r {
					res = append(res, fmt.Sprint(x))
				}
			}
			gotReads[action] = res
		}
	}
	if fmt.Sprint(gotReads) != fmt.Sprint(reads) {
		t.Errorf("the execution role reads %v, want exactly %v", gotReads, reads)
	}
	if td.Properties["TaskRoleArn"] != nil {
		t.Errorf("a task role: the service calls no AWS API (its metric goes through stdout)")
	}
}

// checkScaling: the policy reads the metric the service writes (namespace,
// name, dimension and its value: the binary's own line is checked against
// the same constants in deploy/image), with CPU as the floor.
func checkScaling(t *testing.T, tpl template, env map[string]string) {
	t.Helper()
	if env["METRICS"] != "true" || env["METRICS_EMF_SERVICE"] == "" {
		t.Fatalf("METRICS=%q METRICS_EMF_SERVICE=%q: the tasks write no EMF line to scale on", env["METRICS"], env["METRICS_EMF_SERVICE"])
	}
	targetName, target := tpl.only(t, "AWS::ApplicationAutoScaling::ScalableTarget")
	if target.Properties["ScalableDimension"] != "ecs:service:DesiredCount" || !strings.Contains(fmt.Sprint(target.Properties["ResourceId"]), "Service.Name") {
		t.Errorf("scalable target %v", target.Properties)
	}
	var streams, cpu bool
	for name, r := range tpl.Resources {
		if r.Type != "AWS::ApplicationAutoScaling::ScalingPolicy" {
			continue
		}
		if refName(r.Properties["ScalingTargetId"]) != targetName || r.Properties["PolicyType"] != "TargetTrackingScaling" {
			t.Errorf("%s: not target tracking on %s", name, targetName)
		}
		cfg := get(r.Properties, "TargetTrackingScalingPolicyConfiguration")
		if m := get(cfg, "CustomizedMetricSpecification"); m != nil {
			dims := nameValues(get(m, "Dimensions"), "Value")
			streams = get(m, "Namespace") == layers.EMFNamespace && get(m, "MetricName") == layers.EMFMetric &&
				len(dims) == 1 && dims[layers.EMFDimension] == env["METRICS_EMF_SERVICE"] && get(m, "Statistic") == "Average"
			if !streams {
				t.Errorf("%s reads %v; the tasks write %s/%s with %s=%s, and a task's share is the Average", name, m, layers.EMFNamespace, layers.EMFMetric, layers.EMFDimension, env["METRICS_EMF_SERVICE"])
			}
		}
		if get(cfg, "PredefinedMetricSpecification", "PredefinedMetricType") == "ECSServiceAverageCPUUtilization" {
			cpu = true
		}
	}
	if !streams || !cpu {
		t.Errorf("scaling on streams %v, on CPU %v: want both", streams, cpu)
	}
}

// checkListeners: HTTPS (with HTTP/2) forwards to the targets, /metrics is
// not routed, plain HTTP only redirects.
func checkListeners(t *testing.T, tpl template, tgName string) {
	t.Helper()
	var https string
	for name, r := range tpl.Resources {
		if r.Type != "AWS::ElasticLoadBalancingV2::Listener" {
			continue
		}
		actions, _ := r.Properties["DefaultActions"].([]any)
		switch r.Properties["Protocol"] {
		case "HTTPS":
			https = name
			if len(actions) != 1 || get(actions[0], "Type") != "forward" || refName(get(actions[0], "TargetGroupArn")) != tgName || r.Properties["Certificates"] == nil {
				t.Errorf("HTTPS listener %s: %v", name, r.Properties)
			}
		case "HTTP":
			if len(actions) != 1 || get(actions[0], "Type") != "redirect" || get(actions[0], "RedirectConfig", "Protocol") != "HTTPS" {
				t.Errorf("HTTP listener %s does more than redirect: %v", name, actions)
			}
		}
	}
	if https == "" {
		t.Fatal("no HTTPS listener")
	}
	blocked := false
	for _, r := range tpl.Resources {
		if r.Type != "AWS::ElasticLoadBalancingV2::ListenerRule" || refName(r.Properties["ListenerArn"]) != https {
			continue
		}
		conds, _ := r.Properties["Conditions"].([]any)
		actions, _ := r.Properties["Actions"].([]any)
		for _, c := range conds {
			paths, _ := get(c, "PathPatternConfig", "Values").([]any)
			if slices.Contains(paths, any("/metrics")) && len(actions) == 1 && get(actions[0], "Type") == "fixed-response" && get(actions[0], "FixedResponseConfig", "StatusCode") == "404" {
				blocked = true
			}
		}
	}
	if !blocked {
		t.Errorf("/metrics reaches the tasks through the load balancer (METRICS=true serves it)")
	}
}

// checkService: Fargate, behind the target group, deployments that bring
// new tasks up before old ones go, and no DesiredCount to reset.
func checkService(t *testing.T, tpl template, tgName string) {
	t.Helper()
	_, svc := tpl.only(t, "AWS::ECS::Service")
	p := svc.Properties
	if p["DesiredCount"] != nil {
		t.Errorf("DesiredCount %v: each stack update would reset a scaled-out service to it, moving streams for nothing", p["DesiredCount"])
	}
	if p["LaunchType"] != "FARGATE" || get(p, "DeploymentConfiguration", "MinimumHealthyPercent") != "100" {
		t.Errorf("service %v", p)
	}
	lbs, _ := p["LoadBalancers"].([]any)
	if len(lbs) != 1 || refName(get(lbs[0], "TargetGroupArn")) != tgName || get(lbs[0], "ContainerPort") != strconv.Itoa(image.Port) {
		t.Errorf("service load balancers %v", lbs)
	}
}

// TestEveryLifetime: each StreamLifetime the template offers keeps the
// deregistration rule (the mapping is where it could break).
func TestEveryLifetime(t *testing.T) {
	base := loadTemplate(t, templatePath, with(map[string]any{"RedisUrlSecret": secretARN}))
	lifetimes := base.Parameters["StreamLifetime"].AllowedValues
	if len(lifetimes) == 0 {
		t.Fatal("StreamLifetime has no AllowedValues")
	}
	for _, l := range lifetimes {
		tpl := loadTemplate(t, templatePath, with(map[string]any{"RedisUrlSecret": secretARN, "StreamLifetime": l}))
		env := nameValues(container(t, tpl)["Environment"], "Value")
		_, tg := tpl.only(t, "AWS::ElasticLoadBalancingV2::TargetGroup")
		dereg := seconds(t, attributes(tg.Properties["TargetGroupAttributes"])["deregistration_delay.timeout_seconds"])
		if lifetime := duration(t, env["MAX_STREAM_DURATION"]); lifetime.String() != duration(t, l).String() || dereg < lifetime+60*time.Second {
			t.Errorf("StreamLifetime %s: MAX_STREAM_DURATION %v, deregistration delay %v", l, lifetime, dereg)
		}
	}
}
