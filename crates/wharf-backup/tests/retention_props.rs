//! Property test of retention over random schedules, clocks, templates and failed or pending
//! runs: the promises in `retention`'s module doc hold for every case.

use std::collections::{HashMap, HashSet};

use proptest::prelude::*;
use wharf_backup::retention::{Entry, Template, expired};

const SCHEDULES: [&str; 3] = ["nightly", "hourly-db", "weekly-offsite"];
const HOUR: i64 = 3600;
/// Around 2024, where calendar months and ISO weeks have their irregular lengths.
const EPOCH: i64 = 1_704_067_200;

fn template() -> impl Strategy<Value = Template> {
    (0u32..6, 0u32..8, 0u32..4, 0u32..4, 0u32..3).prop_map(
        |(hourly, daily, weekly, monthly, yearly)| Template {
            hourly,
            daily,
            weekly,
            monthly,
            yearly,
        },
    )
}

/// Entries over up to ~2.5 years, in bursts (several per hour) and gaps; some failed or
/// pending (unverified); ids unique; several schedules mixed.
fn entries() -> impl Strategy<Value = Vec<Entry>> {
    prop::collection::vec(
        (
            0usize..SCHEDULES.len(),
            prop_oneof![0i64..48 * HOUR, 0i64..60 * 24 * HOUR, 0i64..900 * 24 * HOUR],
            prop::bool::weighted(0.75),
        ),
        0..60,
    )
    .prop_map(|raw| {
        raw.into_iter()
            .enumerate()
            .map(|(i, (s, offset, verified))| Entry {
                id: format!("{i:04x}"),
                schedule: SCHEDULES[s].to_owned(),
                time: EPOCH + offset,
                verified,
            })
            .collect()
    })
}

fn newest<'a>(it: impl Iterator<Item = &'a Entry>) -> Option<&'a Entry> {
    it.max_by(|a, b| (a.time, &a.id).cmp(&(b.time, &b.id)))
}

/// The bucket of unix second `t`, computed independently of the crate (via jiff).
fn bucket(period: usize, t: i64) -> i64 {
    let z = jiff::Timestamp::from_second(t)
        .unwrap()
        .to_zoned(jiff::tz::TimeZone::UTC);
    match period {
        0 => t.div_euclid(HOUR),
        1 => t.div_euclid(24 * HOUR),
        2 => {
            let iso = z.date().iso_week_date();
            // Monday of the ISO week, as a day number.
            let monday =
                z.date() - jiff::Span::new().days(i64::from(iso.weekday().to_monday_zero_offset()));
            monday
                .to_zoned(jiff::tz::TimeZone::UTC)
                .unwrap()
                .timestamp()
                .as_second()
                .div_euclid(24 * HOUR)
        }
        3 => i64::from(z.year()) * 12 + i64::from(z.month()) - 1,
        _ => i64::from(z.year()),
    }
}

fn counts(t: &Template) -> [u32; 5] {
    [t.hourly, t.daily, t.weekly, t.monthly, t.yearly]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn retention_keeps_its_promises(
        all in entries(),
        template in template(),
        schedule in 0usize..SCHEDULES.len(),
        now_offset in -10i64 * 24 * HOUR..1000 * 24 * HOUR,
    ) {
        let schedule = SCHEDULES[schedule];
        let now = EPOCH + now_offset;
        let removed = expired(&all, schedule, &template, now);
        let by_id: HashMap<&str, &Entry> = all.iter().map(|e| (e.id.as_str(), e)).collect();
        let removed_set: HashSet<&str> = removed.iter().map(String::as_str).collect();
        prop_assert_eq!(removed_set.len(), removed.len(), "an id returned twice");

        // Only ids given, only of this schedule.
        for id in &removed {
            let e = by_id.get(id.as_str());
            prop_assert!(e.is_some(), "unknown id {}", id);
            prop_assert_eq!(&e.unwrap().schedule, schedule);
        }

        let mine: Vec<&Entry> = all.iter().filter(|e| e.schedule == schedule).collect();
        let newest_verified = newest(mine.iter().copied().filter(|e| e.verified));
        match newest_verified {
            None => prop_assert!(removed.is_empty(), "removed {:?} with nothing verified", removed),
            Some(nv) => {
                // Never the newest verified one.
                prop_assert!(!removed_set.contains(nv.id.as_str()));
                for e in &mine {
                    if !e.verified {
                        // Pending ones (newer than the newest good) stay, older failed ones go.
                        let pending = (e.time, &e.id) > (nv.time, &nv.id);
                        prop_assert_eq!(!removed_set.contains(e.id.as_str()), pending, "{:?}", e);
                    }
                }
            }
        }

        // The newest verified entry of each bucket within each window stays.
        for (period, count) in counts(&template).into_iter().enumerate() {
            if count == 0 {
                continue;
            }
            let now_bucket = bucket(period, now);
            let mut best: HashMap<i64, &Entry> = HashMap::new();
            for e in mine.iter().copied().filter(|e| e.verified) {
                let b = bucket(period, e.time.min(now));
                if b + i64::from(count) <= now_bucket {
                    continue;
                }
                let slot = best.entry(b).or_insert(e);
                if (e.time, &e.id) > (slot.time, &slot.id) {
                    *slot = e;
                }
            }
            for e in best.values() {
                prop_assert!(!removed_set.contains(e.id.as_str()), "period {} bucket-newest {:?} removed", period, e);
            }
        }

        // Bounded: at most one per kept period slot, plus the newest verified.
        let kept_verified = mine
            .iter()
            .filter(|e| e.verified && !removed_set.contains(e.id.as_str()))
            .count();
        let slots: u32 = counts(&template).iter().sum();
        prop_assert!(kept_verified as u32 <= slots + 1, "{} kept for {} slots", kept_verified, slots);

        // Stable: after removing, asking again removes nothing more.
        let left: Vec<Entry> = all
            .iter()
            .filter(|e| !removed_set.contains(e.id.as_str()))
            .cloned()
            .collect();
        let again = expired(&left, schedule, &template, now);
        prop_assert!(again.is_empty(), "second pass removed {:?}", again);
    }
}
