package httpapi

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/orderstream/orderstream/shared/broker"
	"github.com/orderstream/orderstream/shared/broker/brokertest"
	"github.com/orderstream/orderstream/shared/order"
)

func TestPublishInputCheck(t *testing.T) {
	str := func(s string) *string { return &s }
	const id = "7C9E6679-7425-40DE-944B-E07FC1F90AE7"
	tests := []struct {
		name   string
		in     PublishInput
		field  string // "" when the input is good
		status order.Status
	}{
		{"good, any UUID form", PublishInput{OrderID: id, Status: str("Shipped")}, "", order.Shipped},
		{"good with a key", PublishInput{OrderID: id, Status: str("Created"), IdempotencyKey: "k-1"}, "", order.Created},
		{"bad id", PublishInput{OrderID: "42", Status: str("Shipped")}, "orderId", 0},
		{"no id", PublishInput{Status: str("Shipped")}, "orderId", 0},
		{"no status", PublishInput{OrderID: id}, "status", 0},
		{"empty status", PublishInput{OrderID: id, Status: str("")}, "status", 0},
		{"status in another case", PublishInput{OrderID: id, Status: str("shipped")}, "status", 0},
		{"key with a space", PublishInput{OrderID: id, Status: str("Shipped"), IdempotencyKey: "a b"}, "idempotencyKey", 0},
		{"key too long", PublishInput{OrderID: id, Status: str("Shipped"), IdempotencyKey: strings.Repeat("k", 256)}, "idempotencyKey", 0},
		{"bad id and bad status: the id is named", PublishInput{OrderID: "x", Status: str("Nope")}, "orderId", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gotID, req, err := tt.in.Check()
			var ie *InputError
			if tt.field == "" {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				if gotID.String() != strings.ToLower(id) || req.Status != tt.status || req.IdempotencyKey != tt.in.IdempotencyKey {
					t.Errorf("Check = %v %+v", gotID, req)
				}
				return
			}
			if !errors.As(err, &ie) || ie.Field != tt.field {
				t.Fatalf("Check error %v, want an InputError on %s", err, tt.field)
			}
		})
	}
}

// TestPublishOutcomes: Publish answers the broker's refusals as the broker
// gives them, so that each caller (HTTP, queue) can map them.
func TestPublishOutcomes(t *testing.T) {
	b := broker.NewMemory(brokertest.Options())
	defer b.Close()
	ctx := context.Background()
	str := func(s string) *string { return &s }
	const id = "7c9e6679-7425-40de-944b-e07fc1f90ae7"

	first, err := Publish(ctx, b, PublishInput{OrderID: id, Status: str("Packed"), IdempotencyKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	again, err := Publish(ctx, b, PublishInput{OrderID: id, Status: str("Packed"), IdempotencyKey: "k"})
	if err != nil || again.ID != first.ID {
		t.Errorf("a repeat answered %v %v, want the first event %s", again.ID, err, first.ID)
	}
	var ke *broker.IdempotencyKeyError
	if _, err := Publish(ctx, b, PublishInput{OrderID: id, Status: str("Shipped"), IdempotencyKey: "k"}); !errors.As(err, &ke) {
		t.Errorf("the key for another status: %v, want an IdempotencyKeyError", err)
	}
	var te *order.TransitionError
	if _, err := Publish(ctx, b, PublishInput{OrderID: id, Status: str("Created")}); !errors.As(err, &te) || te.Current != order.Packed {
		t.Errorf("going back: %v, want a TransitionError from Packed", err)
	}
	b.Close()
	if _, err := Publish(ctx, b, PublishInput{OrderID: id, Status: str("Shipped")}); !errors.Is(err, broker.ErrUnavailable) {
		t.Errorf("closed broker: %v, want ErrUnavailable", err)
	}
}
