//! Reading komisi's Prometheus exposition: gauges, counter sums, histogram deltas.
use anyhow::Result;
use std::collections::BTreeMap;

pub struct Scrape {
    samples: Vec<(String, BTreeMap<String, String>, f64)>,
}

pub async fn scrape(http: &reqwest::Client, base: &str) -> Result<Scrape> {
    let text = http.get(format!("{base}/metrics")).send().await?.text().await?;
    let mut samples = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let Some((series, value)) = line.rsplit_once(' ') else { continue };
        let (name, labels) = series.split_once('{').map(|(n, l)| (n, l.trim_end_matches('}'))).unwrap_or((series, ""));
        let labels = labels
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
            .collect();
        if let Ok(v) = value.parse::<f64>() {
            samples.push((name.to_owned(), labels, v));
        }
    }
    Ok(Scrape { samples })
}

/// Every instance's metrics as one scrape: counters and histogram buckets
/// add up over instances.
pub async fn scrape_all(http: &reqwest::Client, bases: &[String]) -> Result<Scrape> {
    let mut samples = Vec::new();
    for base in bases {
        samples.extend(scrape(http, base).await?.samples);
    }
    Ok(Scrape { samples })
}

impl Scrape {
    /// Σ over the series of `name` whose labels include `with`.
    pub fn sum(&self, name: &str, with: &[(&str, &str)]) -> f64 {
        self.samples
            .iter()
            .filter(|(n, labels, _)| n == name && with.iter().all(|(k, v)| labels.get(*k).is_some_and(|x| x == v)))
            .map(|(_, _, v)| v)
            .sum()
    }

    fn buckets(&self, name: &str, with: &[(&str, &str)]) -> Vec<(f64, f64)> {
        let bucket = format!("{name}_bucket");
        let mut out: Vec<(f64, f64)> = Vec::new();
        // Summed per bound over the series (labels, instances) of the histogram.
        let series = self
            .samples
            .iter()
            .filter(|(n, labels, _)| *n == bucket && with.iter().all(|(k, v)| labels.get(*k).is_some_and(|x| x == v)));
        for (le, v) in series.filter_map(|(_, l, v)| {
            l.get("le").map(|le| (if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap_or(f64::INFINITY) }, *v))
        }) {
            match out.iter_mut().find(|(x, _)| *x == le) {
                Some((_, c)) => *c += v,
                None => out.push((le, v)),
            }
        }
        out.sort_by(|a, b| a.0.total_cmp(&b.0));
        out
    }
}

/// Cumulative bucket counts observed between two scrapes.
pub fn histogram_delta(before: &Scrape, after: &Scrape, name: &str) -> Vec<(f64, f64)> {
    histogram_delta_with(before, after, name, &[])
}

/// [`histogram_delta`] of the series with these labels.
pub fn histogram_delta_with(before: &Scrape, after: &Scrape, name: &str, with: &[(&str, &str)]) -> Vec<(f64, f64)> {
    let b = before.buckets(name, with);
    after
        .buckets(name, with)
        .into_iter()
        .map(|(le, v)| (le, v - b.iter().find(|(x, _)| *x == le).map(|(_, c)| *c).unwrap_or(0.0)))
        .collect()
}

/// The upper bound of the bucket holding quantile `q` (bucket resolution).
pub fn quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    buckets.iter().find(|(_, c)| *c >= q * total).map(|(le, _)| *le)
}

/// Events accepted (202 on an intake route) minus events applied or given up:
/// the backlog, from live counters (the gauge is only refreshed by the sweep).
pub fn open_events(m: &Scrape) -> f64 {
    let accepted: f64 = ["/v1/orders", "/v1/orders/{id}/refunds", "/v1/orders/{id}/cancel", "/v1/orders/{id}/complete"]
        .iter()
        .map(|route| m.sum("komisi_http_requests_total", &[("route", route), ("status", "202")]))
        .sum();
    accepted
        - m.sum("komisi_events_total", &[("outcome", "done")])
        - m.sum("komisi_events_total", &[("outcome", "dead")])
}
