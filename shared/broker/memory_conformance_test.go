package broker_test

import (
	"testing"

	"github.com/orderstream/orderstream/shared/broker"
	"github.com/orderstream/orderstream/shared/broker/brokertest"
)

func TestMemoryConformance(t *testing.T) {
	brokertest.Run(t, func(t *testing.T, opts broker.Options) broker.Broker {
		return broker.NewMemory(opts)
	})
}
