import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { OTLPMetricExporter } from '@opentelemetry/exporter-metrics-otlp-proto';
import { AggregationTemporalityPreference } from '@opentelemetry/exporter-metrics-otlp-http';
import { AggregationType } from '@opentelemetry/sdk-metrics';
import { servesPrometheus } from './sdk.ts';

describe('one metrics reader for /metrics and OTLP (servesPrometheus)', () => {
  it('the OTLP default (cumulative, default aggregations) serves /metrics too', () => {
    assert.equal(servesPrometheus(new OTLPMetricExporter()), true);
    assert.equal(servesPrometheus(new OTLPMetricExporter({ temporalityPreference: AggregationTemporalityPreference.CUMULATIVE })), true);
  });

  it('delta or low-memory temporality keeps a Prometheus reader of its own (a scrape would reset what OTLP exports)', () => {
    assert.equal(servesPrometheus(new OTLPMetricExporter({ temporalityPreference: AggregationTemporalityPreference.DELTA })), false);
    assert.equal(servesPrometheus(new OTLPMetricExporter({ temporalityPreference: AggregationTemporalityPreference.LOWMEMORY })), false);
  });

  it('exponential histograms (not shown by the Prometheus text format) keep one too', () => {
    const exporter = new OTLPMetricExporter({ aggregationPreference: () => ({ type: AggregationType.EXPONENTIAL_HISTOGRAM }) });
    assert.equal(servesPrometheus(exporter), false);
  });
});
