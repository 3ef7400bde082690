module github.com/mlpulse/jaeger-build

go 1.26.8

// Copied from github.com/jaegertracing/jaeger v1.76.0's own go.mod: replace
// directives of a dependency are not inherited, so the wrapper must repeat it.
replace github.com/Shopify/sarama => github.com/Shopify/sarama v1.33.0
