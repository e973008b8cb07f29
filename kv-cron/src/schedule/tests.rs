use super::*;

fn f(start: Option<u32>, end: Option<u32>, every: Option<u32>) -> Option<Field> {
    Some(Field::Range { start, end, every })
}

#[test]
fn object_form_converts_as_deno_does() {
    let cases: Vec<(ScheduleObject, &str)> = vec![
        (
            ScheduleObject {
                minute: Some(Field::Exact(3)),
                ..Default::default()
            },
            "3 * * * *",
        ),
        (
            ScheduleObject {
                hour: f(None, None, Some(2)),
                ..Default::default()
            },
            "0 */2 * * *",
        ),
        (
            ScheduleObject {
                day_of_month: f(None, None, Some(10)),
                ..Default::default()
            },
            "0 0 */10 * *",
        ),
        (
            ScheduleObject {
                month: f(None, None, Some(3)),
                ..Default::default()
            },
            "0 0 1 */3 *",
        ),
        (
            ScheduleObject {
                day_of_week: f(None, None, Some(2)),
                ..Default::default()
            },
            "0 0 * * */2",
        ),
        (
            ScheduleObject {
                minute: f(None, None, Some(10)),
                day_of_month: f(None, None, Some(5)),
                ..Default::default()
            },
            "*/10 * */5 * *",
        ),
        (
            ScheduleObject {
                minute: Some(Field::List(vec![1, 2, 3])),
                ..Default::default()
            },
            "1,2,3 * * * *",
        ),
        (
            ScheduleObject {
                hour: Some(Field::Exact(5)),
                ..Default::default()
            },
            "0 5 * * *",
        ),
        (
            ScheduleObject {
                minute: f(Some(1), Some(5), Some(2)),
                ..Default::default()
            },
            "1-5/2 * * * *",
        ),
        (
            ScheduleObject {
                minute: f(Some(1), None, Some(2)),
                ..Default::default()
            },
            "1/2 * * * *",
        ),
        (
            ScheduleObject {
                minute: f(Some(7), None, None),
                ..Default::default()
            },
            "7/1 * * * *",
        ),
        (
            ScheduleObject {
                month: Some(Field::Exact(4)),
                ..Default::default()
            },
            "0 0 1 4 *",
        ),
        (
            ScheduleObject {
                day_of_week: Some(Field::Exact(3)),
                ..Default::default()
            },
            "0 0 * * 3",
        ),
        (
            ScheduleObject {
                hour: Some(Field::Exact(4)),
                day_of_month: Some(Field::Exact(2)),
                ..Default::default()
            },
            "0 4 2 * *",
        ),
        (ScheduleObject::default(), "* * * * *"),
    ];
    for (object, want) in cases {
        assert_eq!(
            object.to_cron_string().expect("converts"),
            want,
            "{object:?}"
        );
        Schedule::from_object(&object).expect("parses");
    }
    let bad = ScheduleObject {
        minute: f(None, Some(5), None),
        ..Default::default()
    };
    assert_eq!(
        bad.to_cron_string()
            .expect_err("end without start")
            .to_string(),
        "Invalid cron schedule: start=undefined, end=5, every=undefined"
    );
}

#[test]
fn invalid_strings_are_rejected() {
    for bad in [
        "* * * *",
        "* * * * * *",
        "bogus",
        "m * * * *",
        "61 * * * *",
        "",
        "@daily",
    ] {
        assert_eq!(
            Schedule::parse(bad).expect_err(bad).to_string(),
            "Invalid cron schedule",
            "{bad}"
        );
    }
}

#[test]
fn next_ticks() {
    // 2026-11-27 00:00:00 UTC is a Friday.
    let friday = 1_795_737_600_000u64;
    let every5 = Schedule::parse("*/5 * * * *").expect("valid");
    assert_eq!(every5.next_after(friday), Some(friday + 5 * 60_000));
    assert_eq!(every5.next_after(friday + 1), Some(friday + 5 * 60_000));
    // POSIX day of week: 0 and 7 are Sunday, 5 is Friday.
    let sunday = friday + 2 * 86_400_000;
    for text in ["0 0 * * 0", "0 0 * * 7", "0 0 * * SUN"] {
        assert_eq!(
            Schedule::parse(text).expect("valid").next_after(friday),
            Some(sunday),
            "{text}"
        );
    }
    assert_eq!(
        Schedule::parse("0 12 * * 5")
            .expect("valid")
            .next_after(friday),
        Some(friday + 12 * 3_600_000)
    );
    // Both day fields restricted: either matches (the 1st, or a Sunday).
    let either = Schedule::parse("0 0 1 * 0").expect("valid");
    assert_eq!(either.next_after(friday), Some(sunday));
}
