package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambdaurl"
)

// eventHandler serves h to both events that reach this function, through
// lambdaurl for each: the adapter streams whatever h writes, as it writes it.
//
//   - A function URL's event (RESPONSE_STREAM): lambdaurl as it is.
//   - An API Gateway REST API's event, from a Lambda proxy integration with
//     ResponseTransferMode STREAM: the same request in the REST (payload 1.0)
//     shape, and a response prelude that differs only in its Go type, so it is
//     translated on the way in and re-wrapped on the way out.
//
// Both responses are the "application/vnd.awslambda.http-integration-response"
// stream: a JSON prelude with status and headers, 8 NUL bytes, then the body.
func eventHandler(h http.Handler) func(context.Context, json.RawMessage) (io.Reader, error) {
	serve := lambdaurl.Wrap(h)
	return func(ctx context.Context, raw json.RawMessage) (io.Reader, error) {
		var probe struct {
			HTTPMethod string `json:"httpMethod"` // only REST API events have it
		}
		if err := json.Unmarshal(raw, &probe); err != nil {
			return nil, fmt.Errorf("decode event: %w", err)
		}
		if probe.HTTPMethod == "" {
			var ev events.LambdaFunctionURLRequest
			if err := json.Unmarshal(raw, &ev); err != nil {
				return nil, fmt.Errorf("decode function URL event: %w", err)
			}
			withCookies(&ev)
			res, err := serve(ctx, &ev)
			if err != nil {
				return nil, err
			}
			return res, nil
		}
		var ev events.APIGatewayProxyRequest
		if err := json.Unmarshal(raw, &ev); err != nil {
			return nil, fmt.Errorf("decode API Gateway event: %w", err)
		}
		res, err := serve(ctx, fromREST(&ev))
		if err != nil {
			return nil, err
		}
		return &events.APIGatewayProxyStreamingResponse{
			StatusCode: res.StatusCode,
			Headers:    res.Headers,
			Cookies:    res.Cookies,
			Body:       res.Body,
		}, nil
	}
}

// fromREST restates a REST API proxy event as the function URL event
// lambdaurl takes. Multi-value headers and query parameters win over their
// single-value copies, as API Gateway sends both.
func fromREST(ev *events.APIGatewayProxyRequest) *events.LambdaFunctionURLRequest {
	headers := make(map[string]string, len(ev.Headers))
	for k, v := range ev.Headers {
		headers[k] = v
	}
	for k, vs := range ev.MultiValueHeaders {
		headers[k] = strings.Join(vs, ",")
	}
	query := url.Values{}
	for k, v := range ev.QueryStringParameters {
		query.Set(k, v)
	}
	for k, vs := range ev.MultiValueQueryStringParameters {
		query[k] = vs
	}
	return &events.LambdaFunctionURLRequest{
		RawPath:         ev.Path,
		RawQueryString:  query.Encode(),
		Headers:         headers,
		Body:            ev.Body,
		IsBase64Encoded: ev.IsBase64Encoded,
		RequestContext: events.LambdaFunctionURLRequestContext{
			AccountID:  ev.RequestContext.AccountID,
			RequestID:  ev.RequestContext.RequestID,
			DomainName: ev.RequestContext.DomainName,
			HTTP: events.LambdaFunctionURLRequestContextHTTPDescription{
				Method:    ev.HTTPMethod,
				Path:      ev.Path,
				Protocol:  ev.RequestContext.Protocol,
				SourceIP:  ev.RequestContext.Identity.SourceIP,
				UserAgent: ev.RequestContext.Identity.UserAgent,
			},
		},
	}
}

// withCookies puts a function URL event's cookies back into a Cookie header:
// the payload 2.0 format moves them to their own field, and lambdaurl does
// not restore them, so without this a cookie token (AUTH_COOKIE) would never
// reach the handler.
func withCookies(ev *events.LambdaFunctionURLRequest) {
	if len(ev.Cookies) == 0 {
		return
	}
	if ev.Headers == nil {
		ev.Headers = map[string]string{}
	}
	for k := range ev.Headers {
		if strings.EqualFold(k, "cookie") {
			return // sent as a header after all: keep it as it came
		}
	}
	ev.Headers["cookie"] = strings.Join(ev.Cookies, "; ")
}
