//! Quantities in a sentence: recognition, normalisation to a base unit, comparison.
//!
//! [`parse`] reads a sentence and returns every quantity it states, each with a
//! [`Dimension`], a value interval in the dimension's base unit, the rounding its written
//! form implies and a [`Qualifier`]. [`compare`] tells whether two quantities agree.
//!
//! # Numbers
//!
//! `1,200`, `1 200` (also with a thin or no-break space) and `1200` are the same number;
//! `3.5` is a decimal (a dot is never a thousands separator); `1.2 million`, `3 billion`,
//! `5 thousand` are scaled. Number words `two` … `twenty`, `thirty` … `ninety` count when a
//! unit or a noun follows (`twelve stations`); `one` never does (it is mostly a pronoun).
//! Numbers that name something (`Line 3`, `Zone 2`, `Platform 9`, `Zones 1–3`, `Class 41`:
//! a number after a naming noun or after a capitalised word inside the sentence; also a
//! single capital after a naming noun, `zone A`) are identifiers, not quantities;
//! [`Parsed::identifiers`] lists them so they can be matched as part of a subject. Numbers
//! glued into a name (`SmolLM2-135M`) are neither. Ordinals (`5th`) are quantities only
//! inside dates.
//!
//! # Dimensions and base units
//!
//! | dimension | written as | base unit |
//! |---|---|---|
//! | length | mm, cm, m, km, metres/meters, kilometres, miles, ft | metre |
//! | mass | g, kg, t, tonnes, tons | kilogram |
//! | duration | s, sec, seconds, min, minutes, h, hr, hours, days, weeks, months, years, decades; compounds such as `2 hours 15 minutes` add up | second |
//! | speed | km/h, kph, kmh, km per hour, m/s, mph | metre per second |
//! | area | m², m2, sq m, km², sq km, square kilometres, hectares, ha | square metre |
//! | money | a currency symbol or code before (`€12`, `VDC 12`) or a code or name after (`12 EUR`, `12 euros`) | the currency itself: amounts in different currencies are never comparable |
//! | percent | `%`, percent, per cent | percent |
//! | count | a number followed by a noun (`45 stations`, `1,200 passengers`) | the count; comparable only when the nouns match (below) |
//! | date | `March 5, 2021`, `5 March 2021`, `5th of March 2021`, `2021-03-05`, `5 Mar 2021`, `March 2021`, a bare year `1987`, a decade `1990s` | an interval of days |
//! | day of year | `5 March`, `March 5` without a year | month and day |
//! | time of day | `05:30`, `5:30 pm`, `6 am` | minutes after midnight |
//! | data size | B, kB, MB, GB, TB, megabytes | byte |
//! | power | W, kW, MW, hp | watt |
//! | voltage, frequency | V, kV; Hz, kHz, MHz | volt; hertz |
//! | temperature | °C, degrees Celsius | degree Celsius |
//! | volume | l, litres, ml | litre |
//! | plain number | a number with no unit or noun, ending a clause (`defaults to 15.`) | itself; compared only when the same word leads both |
//!
//! A rate suffix (`per hour`, `a day`, `daily`, `/h`, `each way`, `per person`) is part of
//! the dimension: `12 trains per hour` and `12 trains` are not comparable. Count nouns match
//! when their head nouns (the last noun of the phrase) are equal or when the first noun of
//! one phrase appears in the other (`12 electric trains` and `8 trains`). A part of a whole
//! (`31 of the 40 stations`) is a count of its own kind, compared only with other parts;
//! the whole (`40 stations`) is read as well. A bare number that ends a list item after a
//! count (`a Heron unit 3, a Pika unit 1`) counts the same noun as that count.
//! A four-digit number from 1800 to 2100 is a year when a date word leads it (`in`, `since`,
//! `by`, …) or no noun follows it; otherwise it is a count (`2000 passengers`).
//!
//! # Equality
//!
//! Each quantity stands for an interval of values; two quantities of one dimension agree
//! ([`Comparison::Consistent`]) when their intervals overlap, and differ otherwise.
//!
//! - An exact value `v` covers `v ± max(tolerance·|v|, r)`, where `r` is half a unit of
//!   its last written decimal (`3.5` → `±0.05`; integers: `r = 0`). So `3.5 km` agrees with
//!   `3,460 m` and `3 km` does not agree with `3.4 km`.
//! - A range (`10–15 minutes`, `between 10 and 15 minutes`) covers its ends, widened the same way.
//! - `about`, `around`, `approximately`, `roughly`, `some`, `nearly`, `almost`, `circa`,
//!   `~` make a value approximate: it covers `v ± max(tolerance·|v|, approx_tolerance·|v|,
//!   p)`, where `p` is half the place value of its last non-zero digit (`about 1,200` →
//!   `±60` with the default 5 % approx tolerance and `p = 50`; `about 1,000` → `±500`).
//! - `over`, `more than`, `at least`, `above`, `exceeds`, `1,000+`, `or more`, `and over`,
//!   and for dates `after`, make a lower bound (`[v - slack, ∞)`); `under`, `less than`,
//!   `below`, `up to`, `at most`, `within`, `no more than`, `or less`, and for dates
//!   `before`, `by`, `until`, an upper bound. Two bounds of the same direction state a
//!   threshold each and are compared as exact values (`under 12` and `under 6` differ).
//! - Dates: a year stands for the whole year, a month for the whole month; approximate
//!   dates widen by a year (year precision), a month or a week. Dates with a year and days
//!   of the year compare on month and day. Times of day are exact; approximate ones widen by
//!   30 minutes.

use std::ops::Range;

use crate::text::{tokenize, NumLit, TokKind, Token};

/// What a quantity measures.
#[derive(Debug, Clone, PartialEq)]
pub enum Dimension {
    /// Base unit: metre.
    Length,
    /// Base unit: kilogram.
    Mass,
    /// Base unit: second.
    Duration,
    /// Base unit: metre per second.
    Speed,
    /// Base unit: square metre.
    Area,
    /// An amount of money in one currency (an ISO-like code: `EUR`, `USD`, `VDC`).
    Money(String),
    /// Percent.
    Percent,
    /// Base unit: byte (decimal prefixes: 1 MB = 10⁶ bytes).
    Data,
    /// Base unit: watt.
    Power,
    /// Base unit: volt.
    Voltage,
    /// Base unit: hertz.
    Frequency,
    /// Base unit: degree Celsius.
    Temperature,
    /// Base unit: litre.
    Volume,
    /// A number of things; the stemmed noun phrase that follows the number.
    Count(Vec<String>),
    /// A calendar date; the value is an interval of days since 1970-01-01.
    Date,
    /// A month and day without a year; the value is `month * 100 + day`.
    DayOfYear,
    /// Minutes after midnight.
    TimeOfDay,
}

impl Dimension {
    /// A short name for logs and details.
    pub fn name(&self) -> &'static str {
        match self {
            Dimension::Length => "length",
            Dimension::Mass => "mass",
            Dimension::Duration => "duration",
            Dimension::Speed => "speed",
            Dimension::Area => "area",
            Dimension::Money(_) => "money",
            Dimension::Percent => "percent",
            Dimension::Data => "data size",
            Dimension::Power => "power",
            Dimension::Voltage => "voltage",
            Dimension::Frequency => "frequency",
            Dimension::Temperature => "temperature",
            Dimension::Volume => "volume",
            Dimension::Count(_) => "count",
            Dimension::Date => "date",
            Dimension::DayOfYear => "day of year",
            Dimension::TimeOfDay => "time of day",
        }
    }
}

/// How a quantity is hedged or bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Qualifier {
    /// As stated.
    Exact,
    /// `about`, `around`, `nearly`, …
    Approx,
    /// `over`, `at least`, `after`, …
    AtLeast,
    /// `under`, `up to`, `before`, …
    AtMost,
}

/// One quantity found in a sentence.
#[derive(Debug, Clone, PartialEq)]
pub struct Quantity {
    /// What it measures.
    pub dim: Dimension,
    /// The rate denominator (`hour`, `day`, `person`, …), if the quantity is a rate.
    pub per: Option<String>,
    /// Lowest value, in the base unit.
    pub lo: f64,
    /// Highest value, in the base unit (equals `lo` unless a range was written).
    pub hi: f64,
    /// Half a unit of the last written decimal, in the base unit.
    pub round: f64,
    /// Half the place value of the last non-zero digit, in the base unit (used when approximate).
    pub place: f64,
    /// Hedge or bound.
    pub qualifier: Qualifier,
    /// The quantity as written (number, unit, noun, rate).
    pub text: String,
    /// Byte span of `text` in the sentence.
    pub span: Range<usize>,
    /// Tokens of the number, unit and hedge (not the count noun), to leave out of content words.
    pub tokens: Range<usize>,
    /// Index of the token of the (first) number, the anchor for distances.
    pub anchor: usize,
}

/// Tolerances of [`compare`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    /// Relative tolerance of every value (default 0.005).
    pub relative: f64,
    /// Relative tolerance of approximate values (default 0.05).
    pub approx: f64,
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance {
            relative: 0.005,
            approx: 0.05,
        }
    }
}

/// Whether two quantities agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// Same dimension, intervals overlap.
    Consistent,
    /// Same dimension, intervals do not overlap.
    Different,
    /// Different dimensions, currencies, nouns or rates.
    Incomparable,
}

/// Whether two quantities can be compared at all.
pub fn comparable(a: &Quantity, b: &Quantity) -> bool {
    if a.per != b.per {
        return false;
    }
    match (&a.dim, &b.dim) {
        (Dimension::Count(x), Dimension::Count(y)) => nouns_match(x, y),
        (Dimension::Date, Dimension::DayOfYear) | (Dimension::DayOfYear, Dimension::Date) => true,
        (x, y) => x == y,
    }
}

fn nouns_match(x: &[String], y: &[String]) -> bool {
    if x.is_empty() || y.is_empty() {
        // Plain numbers compare with plain numbers only.
        return x.is_empty() && y.is_empty();
    }
    match (x.first(), y.first(), x.last(), y.last()) {
        (Some(fx), Some(fy), Some(lx), Some(ly)) => lx == ly || y.contains(fx) || x.contains(fy),
        _ => false,
    }
}

/// Compares a claimed quantity with one from the evidence.
pub fn compare(claim: &Quantity, evidence: &Quantity, tol: &Tolerance) -> Comparison {
    if !comparable(claim, evidence) {
        return Comparison::Incomparable;
    }
    if matches!(
        (&claim.dim, &evidence.dim),
        (Dimension::Date, Dimension::DayOfYear) | (Dimension::DayOfYear, Dimension::Date)
    ) {
        let (a, b) = (day_of_year_of(claim), day_of_year_of(evidence));
        return match (a, b) {
            (Some(a), Some(b)) if a == b => Comparison::Consistent,
            (Some(_), Some(_)) => Comparison::Different,
            _ => Comparison::Incomparable,
        };
    }
    // Two bounds of one direction state a threshold ("under 12" vs "under 6"): compare the
    // thresholds themselves.
    let same_bound = claim.qualifier == evidence.qualifier
        && matches!(claim.qualifier, Qualifier::AtLeast | Qualifier::AtMost);
    let (a_lo, a_hi) = interval(claim, tol, same_bound);
    let (b_lo, b_hi) = interval(evidence, tol, same_bound);
    if a_lo <= b_hi && b_lo <= a_hi {
        Comparison::Consistent
    } else {
        Comparison::Different
    }
}

/// For a date of day precision, its `month * 100 + day`; for a day of year, its value.
fn day_of_year_of(q: &Quantity) -> Option<i64> {
    match q.dim {
        Dimension::DayOfYear => Some(q.lo as i64),
        Dimension::Date if q.lo == q.hi => {
            let (_, m, d) = civil_from_days(q.lo as i64);
            Some(i64::from(m) * 100 + i64::from(d))
        }
        _ => None,
    }
}

/// The interval of values a quantity stands for, with its slack.
fn interval(q: &Quantity, tol: &Tolerance, bound_as_value: bool) -> (f64, f64) {
    let magnitude = q.lo.abs().max(q.hi.abs());
    let slack = match q.dim {
        Dimension::Date => match q.qualifier {
            Qualifier::Approx => {
                let width = q.hi - q.lo;
                if width >= 364.0 {
                    366.0
                } else if width >= 27.0 {
                    31.0
                } else {
                    7.0
                }
            }
            _ => 0.0,
        },
        Dimension::TimeOfDay => {
            if q.qualifier == Qualifier::Approx {
                30.0
            } else {
                0.0
            }
        }
        Dimension::DayOfYear => 0.0,
        _ => {
            let exact = (tol.relative * magnitude).max(q.round);
            if q.qualifier == Qualifier::Approx {
                exact.max(tol.approx * magnitude).max(q.place)
            } else {
                exact
            }
        }
    };
    let lo = q.lo - slack;
    let hi = q.hi + slack;
    match q.qualifier {
        _ if bound_as_value => (lo, hi),
        Qualifier::AtLeast => (lo, f64::INFINITY),
        Qualifier::AtMost => (f64::NEG_INFINITY, hi),
        _ => (lo, hi),
    }
}

/// A sentence read for quantities.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The sentence's tokens.
    pub tokens: Vec<Token>,
    /// The quantities, in order.
    pub quantities: Vec<Quantity>,
    /// Token indices of identifier numbers or letters (`3` in `Line 3`). Their normalised
    /// form (`line 3`) is in [`Parsed::identifier_names`].
    pub identifiers: Vec<usize>,
    /// Normalised identifiers (`zone 2`), one per entry of `identifiers`.
    pub identifier_names: Vec<String>,
    /// Tokens that belong to a quantity's number, unit, hedge or rate.
    pub consumed: Vec<bool>,
}

/// Words after which a number is an identifier (compared lowercased, singular and plural).
pub(crate) const NAMING_NOUNS: &[&str] = &[
    "line",
    "platform",
    "zone",
    "route",
    "track",
    "gate",
    "bus",
    "tram",
    "exit",
    "level",
    "car",
    "coach",
    "room",
    "terminal",
    "section",
    "chapter",
    "article",
    "page",
    "step",
    "service",
    "train",
    "number",
    "no",
    "nr",
    "version",
    "option",
    "class",
    "category",
    "type",
    "bay",
    "stop",
    "lane",
    "entrance",
    "door",
    "window",
    "desk",
    "counter",
    "phase",
    "stage",
    "tier",
    "band",
    "grade",
    "model",
    "series",
    "sector",
    "block",
    "building",
    "floor",
    "hall",
    "pier",
    "berth",
    "stand",
    "region",
    "district",
    "area",
    "rule",
    "item",
    "table",
    "figure",
    "appendix",
    "form",
    "policy",
    "clause",
    "paragraph",
    "part",
    "lot",
    "group",
    "turn",
    "team",
    "channel",
    "ward",
    "wagon",
    "carriage",
];

/// Words that lead a year (`in 1987`).
const YEAR_LEADS: &[&str] = &[
    "in", "since", "from", "until", "till", "by", "of", "before", "after", "during", "circa",
    "around", "between", "and", "to", "early", "late", "mid", "year", "spring", "summer", "autumn",
    "fall", "winter", "through", "as", "about", "ca", "c", "year's", "—", "-",
];

const MONTHS: &[(&str, u32, bool)] = &[
    // (spelling, month, needs a capital letter)
    ("january", 1, false),
    ("february", 2, false),
    ("march", 3, true),
    ("april", 4, false),
    ("may", 5, true),
    ("june", 6, false),
    ("july", 7, false),
    ("august", 8, true),
    ("september", 9, false),
    ("october", 10, false),
    ("november", 11, false),
    ("december", 12, false),
    ("jan", 1, true),
    ("feb", 2, true),
    ("mar", 3, true),
    ("apr", 4, true),
    ("jun", 6, true),
    ("jul", 7, true),
    ("aug", 8, true),
    ("sep", 9, true),
    ("sept", 9, true),
    ("oct", 10, true),
    ("nov", 11, true),
    ("dec", 12, true),
];

const NUMBER_WORDS: &[(&str, f64)] = &[
    ("two", 2.0),
    ("three", 3.0),
    ("four", 4.0),
    ("five", 5.0),
    ("six", 6.0),
    ("seven", 7.0),
    ("eight", 8.0),
    ("nine", 9.0),
    ("ten", 10.0),
    ("eleven", 11.0),
    ("twelve", 12.0),
    ("thirteen", 13.0),
    ("fourteen", 14.0),
    ("fifteen", 15.0),
    ("sixteen", 16.0),
    ("seventeen", 17.0),
    ("eighteen", 18.0),
    ("nineteen", 19.0),
    ("twenty", 20.0),
    ("thirty", 30.0),
    ("forty", 40.0),
    ("fifty", 50.0),
    ("sixty", 60.0),
    ("seventy", 70.0),
    ("eighty", 80.0),
    ("ninety", 90.0),
    ("hundred", 100.0),
];

const SCALES: &[(&str, f64)] = &[
    ("thousand", 1e3),
    ("million", 1e6),
    ("millions", 1e6),
    ("mn", 1e6),
    ("billion", 1e9),
    ("bn", 1e9),
];

/// Measurement dimensions that have a unit table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UnitDim {
    Length,
    Mass,
    Duration,
    Speed,
    Area,
    Percent,
    Data,
    Power,
    Voltage,
    Frequency,
    Temperature,
    Volume,
}

impl UnitDim {
    fn dimension(self) -> Dimension {
        match self {
            UnitDim::Length => Dimension::Length,
            UnitDim::Mass => Dimension::Mass,
            UnitDim::Duration => Dimension::Duration,
            UnitDim::Speed => Dimension::Speed,
            UnitDim::Area => Dimension::Area,
            UnitDim::Percent => Dimension::Percent,
            UnitDim::Data => Dimension::Data,
            UnitDim::Power => Dimension::Power,
            UnitDim::Voltage => Dimension::Voltage,
            UnitDim::Frequency => Dimension::Frequency,
            UnitDim::Temperature => Dimension::Temperature,
            UnitDim::Volume => Dimension::Volume,
        }
    }
}

const MINUTE: f64 = 60.0;
const HOUR: f64 = 3600.0;
const DAY: f64 = 86_400.0;
const KMH: f64 = 1000.0 / 3600.0;

/// Unit spellings as token sequences (lowercased; single letters are case-sensitive), the
/// dimension and the factor to the base unit. Longer spellings are tried first.
const UNITS: &[(&[&str], UnitDim, f64)] = &[
    (&["km", "/", "h"], UnitDim::Speed, KMH),
    (&["km", "/", "hr"], UnitDim::Speed, KMH),
    (&["km", "per", "hour"], UnitDim::Speed, KMH),
    (&["km", "an", "hour"], UnitDim::Speed, KMH),
    (&["kilometres", "per", "hour"], UnitDim::Speed, KMH),
    (&["kilometers", "per", "hour"], UnitDim::Speed, KMH),
    (&["kilometres", "an", "hour"], UnitDim::Speed, KMH),
    (&["kilometers", "an", "hour"], UnitDim::Speed, KMH),
    (&["kmh"], UnitDim::Speed, KMH),
    (&["kph"], UnitDim::Speed, KMH),
    (&["m", "/", "s"], UnitDim::Speed, 1.0),
    (&["metres", "per", "second"], UnitDim::Speed, 1.0),
    (&["meters", "per", "second"], UnitDim::Speed, 1.0),
    (&["mph"], UnitDim::Speed, 0.44704),
    (&["knots"], UnitDim::Speed, 0.514_444),
    (&["knot"], UnitDim::Speed, 0.514_444),
    (&["kn"], UnitDim::Speed, 0.514_444),
    (&["bytes"], UnitDim::Data, 1.0),
    (&["kb"], UnitDim::Data, 1e3),
    (&["kilobytes"], UnitDim::Data, 1e3),
    (&["mb"], UnitDim::Data, 1e6),
    (&["megabytes"], UnitDim::Data, 1e6),
    (&["megabyte"], UnitDim::Data, 1e6),
    (&["gb"], UnitDim::Data, 1e9),
    (&["gigabytes"], UnitDim::Data, 1e9),
    (&["gigabyte"], UnitDim::Data, 1e9),
    (&["tb"], UnitDim::Data, 1e12),
    (&["terabytes"], UnitDim::Data, 1e12),
    (&["W"], UnitDim::Power, 1.0),
    (&["watts"], UnitDim::Power, 1.0),
    (&["kw"], UnitDim::Power, 1e3),
    (&["kilowatts"], UnitDim::Power, 1e3),
    (&["mw"], UnitDim::Power, 1e6),
    (&["megawatts"], UnitDim::Power, 1e6),
    (&["hp"], UnitDim::Power, 745.7),
    (&["horsepower"], UnitDim::Power, 745.7),
    (&["V"], UnitDim::Voltage, 1.0),
    (&["volts"], UnitDim::Voltage, 1.0),
    (&["kv"], UnitDim::Voltage, 1e3),
    (&["kilovolts"], UnitDim::Voltage, 1e3),
    (&["hz"], UnitDim::Frequency, 1.0),
    (&["hertz"], UnitDim::Frequency, 1.0),
    (&["khz"], UnitDim::Frequency, 1e3),
    (&["mhz"], UnitDim::Frequency, 1e6),
    (&["°", "C"], UnitDim::Temperature, 1.0),
    (&["°C"], UnitDim::Temperature, 1.0),
    (&["degrees", "celsius"], UnitDim::Temperature, 1.0),
    (&["degrees", "C"], UnitDim::Temperature, 1.0),
    (&["litres"], UnitDim::Volume, 1.0),
    (&["litre"], UnitDim::Volume, 1.0),
    (&["liters"], UnitDim::Volume, 1.0),
    (&["liter"], UnitDim::Volume, 1.0),
    (&["l"], UnitDim::Volume, 1.0),
    (&["ml"], UnitDim::Volume, 0.001),
    (&["millilitres"], UnitDim::Volume, 0.001),
    (&["miles", "per", "hour"], UnitDim::Speed, 0.44704),
    (&["sq", "km"], UnitDim::Area, 1e6),
    (&["sq", ".", "km"], UnitDim::Area, 1e6),
    (&["square", "kilometres"], UnitDim::Area, 1e6),
    (&["square", "kilometers"], UnitDim::Area, 1e6),
    (&["square", "kilometre"], UnitDim::Area, 1e6),
    (&["square", "kilometer"], UnitDim::Area, 1e6),
    (&["km²"], UnitDim::Area, 1e6),
    (&["km2"], UnitDim::Area, 1e6),
    (&["sq", "m"], UnitDim::Area, 1.0),
    (&["square", "metres"], UnitDim::Area, 1.0),
    (&["square", "meters"], UnitDim::Area, 1.0),
    (&["square", "metre"], UnitDim::Area, 1.0),
    (&["square", "meter"], UnitDim::Area, 1.0),
    (&["m²"], UnitDim::Area, 1.0),
    (&["m2"], UnitDim::Area, 1.0),
    (&["hectares"], UnitDim::Area, 1e4),
    (&["hectare"], UnitDim::Area, 1e4),
    (&["ha"], UnitDim::Area, 1e4),
    (&["per", "cent"], UnitDim::Percent, 1.0),
    (&["percent"], UnitDim::Percent, 1.0),
    (&["%"], UnitDim::Percent, 1.0),
    (&["pct"], UnitDim::Percent, 1.0),
    (&["mm"], UnitDim::Length, 0.001),
    (&["millimetres"], UnitDim::Length, 0.001),
    (&["millimeters"], UnitDim::Length, 0.001),
    (&["millimetre"], UnitDim::Length, 0.001),
    (&["millimeter"], UnitDim::Length, 0.001),
    (&["cm"], UnitDim::Length, 0.01),
    (&["centimetres"], UnitDim::Length, 0.01),
    (&["centimeters"], UnitDim::Length, 0.01),
    (&["centimetre"], UnitDim::Length, 0.01),
    (&["centimeter"], UnitDim::Length, 0.01),
    (&["km"], UnitDim::Length, 1000.0),
    (&["kilometres"], UnitDim::Length, 1000.0),
    (&["kilometers"], UnitDim::Length, 1000.0),
    (&["kilometre"], UnitDim::Length, 1000.0),
    (&["kilometer"], UnitDim::Length, 1000.0),
    (&["m"], UnitDim::Length, 1.0),
    (&["metres"], UnitDim::Length, 1.0),
    (&["meters"], UnitDim::Length, 1.0),
    (&["metre"], UnitDim::Length, 1.0),
    (&["meter"], UnitDim::Length, 1.0),
    (&["miles"], UnitDim::Length, 1609.344),
    (&["mile"], UnitDim::Length, 1609.344),
    (&["ft"], UnitDim::Length, 0.3048),
    (&["feet"], UnitDim::Length, 0.3048),
    (&["foot"], UnitDim::Length, 0.3048),
    (&["kg"], UnitDim::Mass, 1.0),
    (&["kilograms"], UnitDim::Mass, 1.0),
    (&["kilogram"], UnitDim::Mass, 1.0),
    (&["kilos"], UnitDim::Mass, 1.0),
    (&["g"], UnitDim::Mass, 0.001),
    (&["grams"], UnitDim::Mass, 0.001),
    (&["gram"], UnitDim::Mass, 0.001),
    (&["t"], UnitDim::Mass, 1000.0),
    (&["tonnes"], UnitDim::Mass, 1000.0),
    (&["tonne"], UnitDim::Mass, 1000.0),
    (&["tons"], UnitDim::Mass, 1000.0),
    (&["ton"], UnitDim::Mass, 1000.0),
    (&["s"], UnitDim::Duration, 1.0),
    (&["sec"], UnitDim::Duration, 1.0),
    (&["secs"], UnitDim::Duration, 1.0),
    (&["seconds"], UnitDim::Duration, 1.0),
    (&["second"], UnitDim::Duration, 1.0),
    (&["min"], UnitDim::Duration, MINUTE),
    (&["mins"], UnitDim::Duration, MINUTE),
    (&["minutes"], UnitDim::Duration, MINUTE),
    (&["minute"], UnitDim::Duration, MINUTE),
    (&["h"], UnitDim::Duration, HOUR),
    (&["hr"], UnitDim::Duration, HOUR),
    (&["hrs"], UnitDim::Duration, HOUR),
    (&["hours"], UnitDim::Duration, HOUR),
    (&["hour"], UnitDim::Duration, HOUR),
    (&["days"], UnitDim::Duration, DAY),
    (&["day"], UnitDim::Duration, DAY),
    (&["weeks"], UnitDim::Duration, 7.0 * DAY),
    (&["week"], UnitDim::Duration, 7.0 * DAY),
    (&["months"], UnitDim::Duration, 30.436_875 * DAY),
    (&["month"], UnitDim::Duration, 30.436_875 * DAY),
    (&["years"], UnitDim::Duration, 365.2425 * DAY),
    (&["year"], UnitDim::Duration, 365.2425 * DAY),
    (&["yrs"], UnitDim::Duration, 365.2425 * DAY),
    (&["decades"], UnitDim::Duration, 3652.425 * DAY),
    (&["decade"], UnitDim::Duration, 3652.425 * DAY),
];

/// Currency spellings: symbol or word (lowercased), canonical code, whether it may stand
/// before the number, after it.
const CURRENCIES: &[(&str, &str, bool, bool)] = &[
    ("€", "EUR", true, true),
    ("eur", "EUR", true, true),
    ("euro", "EUR", false, true),
    ("euros", "EUR", false, true),
    ("$", "USD", true, false),
    ("usd", "USD", true, true),
    ("dollar", "USD", false, true),
    ("dollars", "USD", false, true),
    ("£", "GBP", true, false),
    ("gbp", "GBP", true, true),
    ("chf", "CHF", true, true),
    ("francs", "CHF", false, true),
    ("vdc", "VDC", true, true),
    ("crown", "VDC", false, true),
    ("crowns", "VDC", false, true),
    ("¥", "JPY", true, false),
    ("jpy", "JPY", true, true),
    ("yen", "JPY", false, true),
    ("sek", "SEK", true, true),
    ("nok", "NOK", true, true),
    ("dkk", "DKK", true, true),
    ("czk", "CZK", true, true),
];

/// Rate words after a quantity and the denominator they mean.
const RATE_WORDS: &[(&str, &str)] = &[
    ("daily", "day"),
    ("hourly", "hour"),
    ("weekly", "week"),
    ("monthly", "month"),
    ("yearly", "year"),
    ("annually", "year"),
    ("nightly", "night"),
];

/// Denominators after `a`/`an`/`every`/`each` that make a rate (`3 times a day`).
const RATE_UNITS: &[(&str, &str)] = &[
    ("second", "second"),
    ("minute", "minute"),
    ("min", "minute"),
    ("hour", "hour"),
    ("h", "hour"),
    ("hr", "hour"),
    ("day", "day"),
    ("week", "week"),
    ("month", "month"),
    ("year", "year"),
    ("night", "night"),
    ("weekday", "weekday"),
    ("way", "way"),
    ("person", "person"),
    ("passenger", "passenger"),
    ("trip", "trip"),
    ("journey", "trip"),
    ("ride", "trip"),
    ("adult", "adult"),
    ("child", "child"),
    ("ticket", "ticket"),
    ("car", "car"),
    ("vehicle", "vehicle"),
    ("bike", "bike"),
    ("bag", "bag"),
    ("item", "item"),
    ("kg", "kg"),
    ("km", "km"),
    ("kilometre", "km"),
    ("kilometer", "km"),
    ("mile", "mile"),
    ("stop", "stop"),
    ("station", "station"),
    ("zone", "zone"),
    ("seat", "seat"),
    ("pass", "pass"),
];

/// Hedge words before a number, lowercased, with the qualifier they make; longer first.
const HEDGES: &[(&[&str], Qualifier)] = &[
    (&["no", "more", "than"], Qualifier::AtMost),
    (&["not", "more", "than"], Qualifier::AtMost),
    (&["no", "less", "than"], Qualifier::AtLeast),
    (&["no", "fewer", "than"], Qualifier::AtLeast),
    (&["more", "than"], Qualifier::AtLeast),
    (&["greater", "than"], Qualifier::AtLeast),
    (&["upwards", "of"], Qualifier::AtLeast),
    (&["in", "excess", "of"], Qualifier::AtLeast),
    (&["at", "least"], Qualifier::AtLeast),
    (&["a", "minimum", "of"], Qualifier::AtLeast),
    (&["at", "most"], Qualifier::AtMost),
    (&["a", "maximum", "of"], Qualifier::AtMost),
    (&["less", "than"], Qualifier::AtMost),
    (&["fewer", "than"], Qualifier::AtMost),
    (&["up", "to"], Qualifier::AtMost),
    (&["an", "estimated"], Qualifier::Approx),
    (&["just", "over"], Qualifier::AtLeast),
    (&["just", "under"], Qualifier::AtMost),
    (&["about"], Qualifier::Approx),
    (&["around"], Qualifier::Approx),
    (&["approximately"], Qualifier::Approx),
    (&["approx"], Qualifier::Approx),
    (&["roughly"], Qualifier::Approx),
    (&["some"], Qualifier::Approx),
    (&["nearly"], Qualifier::Approx),
    (&["almost"], Qualifier::Approx),
    (&["circa"], Qualifier::Approx),
    (&["ca"], Qualifier::Approx),
    (&["c"], Qualifier::Approx),
    (&["~"], Qualifier::Approx),
    (&["≈"], Qualifier::Approx),
    (&["over"], Qualifier::AtLeast),
    (&["above"], Qualifier::AtLeast),
    (&["exceeds"], Qualifier::AtLeast),
    (&["exceeding"], Qualifier::AtLeast),
    (&["beyond"], Qualifier::AtLeast),
    (&["under"], Qualifier::AtMost),
    (&["below"], Qualifier::AtMost),
    (&["within"], Qualifier::AtMost),
    (&["maximum"], Qualifier::AtMost),
    (&["max"], Qualifier::AtMost),
    (&["minimum"], Qualifier::AtLeast),
    (&["min"], Qualifier::AtLeast),
];

/// Date bounds before a date.
const DATE_BOUNDS: &[(&str, Qualifier)] = &[
    ("before", Qualifier::AtMost),
    ("by", Qualifier::AtMost),
    ("until", Qualifier::AtMost),
    ("till", Qualifier::AtMost),
    ("after", Qualifier::AtLeast),
];

struct Reader<'a> {
    t: &'a [Token],
    sentence: &'a str,
    consumed: Vec<bool>,
    quantities: Vec<Quantity>,
    identifiers: Vec<usize>,
    identifier_names: Vec<String>,
}

/// Reads the quantities of one sentence.
pub fn parse(sentence: &str) -> Parsed {
    let tokens = tokenize(sentence);
    let mut r = Reader {
        t: &tokens,
        sentence,
        consumed: vec![false; tokens.len()],
        quantities: Vec::new(),
        identifiers: Vec::new(),
        identifier_names: Vec::new(),
    };
    r.run();
    let Reader {
        consumed,
        quantities,
        identifiers,
        identifier_names,
        ..
    } = r;
    let quantities = merge_compound_durations(quantities, &tokens, sentence);
    Parsed {
        tokens: tokens.clone(),
        quantities,
        identifiers,
        identifier_names,
        consumed,
    }
}

impl Reader<'_> {
    fn run(&mut self) {
        let mut i = 0;
        while i < self.t.len() {
            if self.consumed[i] {
                i += 1;
                continue;
            }
            if self.letter_identifier_at(i) {
                i += 1;
                continue;
            }
            let next = self
                .date_at(i)
                .or_else(|| self.time_at(i))
                .or_else(|| self.money_prefix_at(i))
                .or_else(|| self.number_at(i));
            i = match next {
                Some(end) => end.max(i + 1),
                None => i + 1,
            };
        }
    }

    /// `zone A`, `Platform B`: a naming noun and a single capital letter.
    fn letter_identifier_at(&mut self, i: usize) -> bool {
        let t = &self.t[i];
        let single_capital = t.is_word()
            && t.text.chars().count() == 1
            && t.text.chars().all(|c| c.is_ascii_uppercase());
        if !single_capital || i == 0 {
            return false;
        }
        let prev = &self.t[i - 1];
        let lower = prev.lower.as_str();
        let singular = singular_of(lower);
        if prev.is_word() && (NAMING_NOUNS.contains(&lower) || NAMING_NOUNS.contains(&singular)) {
            self.identifiers.push(i);
            self.identifier_names
                .push(format!("{singular} {}", t.lower));
            self.consumed[i] = true;
            return true;
        }
        false
    }

    fn word(&self, i: usize) -> Option<&str> {
        self.t
            .get(i)
            .filter(|t| t.is_word())
            .map(|t| t.lower.as_str())
    }

    fn lower(&self, i: usize) -> Option<&str> {
        self.t.get(i).map(|t| t.lower.as_str())
    }

    fn month_at(&self, i: usize) -> Option<u32> {
        let t = self.t.get(i).filter(|t| t.is_word())?;
        let capital = t.text.chars().next().is_some_and(char::is_uppercase);
        MONTHS
            .iter()
            .find(|(name, _, needs_capital)| *name == t.lower && (capital || !needs_capital))
            .map(|&(_, m, _)| m)
    }

    /// Skips an abbreviation dot after a month (`Mar.`).
    fn after_month(&self, i: usize) -> usize {
        if self.t.get(i + 1).is_some_and(|t| t.is_sym('.'))
            && self.t[i].lower.len() <= 4
            && self.t.get(i + 2).is_some()
        {
            i + 2
        } else {
            i + 1
        }
    }

    fn day_number(&self, i: usize) -> Option<u32> {
        let n = self.t.get(i)?.number()?;
        (n.decimals == 0 && !n.grouped && (1.0..=31.0).contains(&n.value)).then_some(n.value as u32)
    }

    fn year_number(&self, i: usize) -> Option<i32> {
        let n = self.t.get(i)?.number()?;
        (n.decimals == 0 && !n.grouped && !n.ordinal && n.int_digits == 4)
            .then_some(n.value as i32)
            .filter(|y| (1000..=2999).contains(y))
    }

    fn date_at(&mut self, i: usize) -> Option<usize> {
        let tok = self.t.get(i)?;
        if let TokKind::IsoDate(y, m, d) = tok.kind {
            let day = days_from_civil(y, m, d) as f64;
            self.push_date(i, i + 1, Dimension::Date, day, day);
            return Some(i + 1);
        }
        // Day first: "5 March 2021", "5th of March", "5 Mar 2021".
        if let Some(day) = self.day_number(i) {
            let mut j = i + 1;
            if self.word(j) == Some("of") {
                j += 1;
            }
            if let Some(month) = self.month_at(j) {
                let mut k = self.after_month(j);
                if self.t.get(k).is_some_and(|t| t.is_sym(',')) {
                    k += 1;
                }
                if let Some(year) = self.year_number(k) {
                    let d = days_from_civil(year, month, day) as f64;
                    self.push_date(i, k + 1, Dimension::Date, d, d);
                    return Some(k + 1);
                }
                let v = f64::from(month * 100 + day);
                let end = self.after_month(j);
                let end = if self.t.get(end - 1).is_some_and(|t| t.is_sym('.')) && end - 1 > j {
                    end - 1
                } else {
                    end
                };
                self.push_date(i, end, Dimension::DayOfYear, v, v);
                return Some(end);
            }
        }
        // Month first: "March 5, 2021", "March 2021", "March 5".
        if let Some(month) = self.month_at(i) {
            let j = self.after_month(i);
            if let Some(day) = self.day_number(j) {
                let mut k = j + 1;
                if self.t.get(k).is_some_and(|t| t.is_sym(',')) {
                    k += 1;
                }
                if let Some(year) = self.year_number(k) {
                    let d = days_from_civil(year, month, day) as f64;
                    self.push_date(i, k + 1, Dimension::Date, d, d);
                    return Some(k + 1);
                }
                // "March 5" but not "March 5 trains": a unit or noun must not follow.
                let follows_word = self.word(j + 1).is_some_and(|w| !is_stop(w));
                if !follows_word {
                    let v = f64::from(month * 100 + day);
                    self.push_date(i, j + 1, Dimension::DayOfYear, v, v);
                    return Some(j + 1);
                }
            }
            let mut k = j;
            if self.t.get(k).is_some_and(|t| t.is_sym(',')) {
                k += 1;
            }
            if let Some(year) = self.year_number(k) {
                let lo = days_from_civil(year, month, 1) as f64;
                let hi = days_from_civil(year, month, days_in_month(year, month)) as f64;
                self.push_date(i, k + 1, Dimension::Date, lo, hi);
                return Some(k + 1);
            }
        }
        None
    }

    fn push_date(&mut self, start: usize, end: usize, dim: Dimension, lo: f64, hi: f64) {
        let (qualifier, qstart) = self.date_qualifier(start);
        self.push(Quantity {
            dim,
            per: None,
            lo,
            hi,
            round: 0.0,
            place: 0.0,
            qualifier,
            text: String::new(),
            span: 0..0,
            tokens: qstart..end,
            anchor: start,
        });
    }

    fn date_qualifier(&self, start: usize) -> (Qualifier, usize) {
        if start > 0 {
            if let Some(w) = self.word(start - 1) {
                if let Some((_, q)) = DATE_BOUNDS.iter().find(|(b, _)| *b == w) {
                    return (*q, start);
                }
            }
        }
        let (q, s) = self.hedge_before(start);
        match q {
            Qualifier::Approx => (q, s),
            _ => (Qualifier::Exact, start),
        }
    }

    /// Finalises a quantity: text and span from its tokens (count nouns and rates included
    /// by the caller through `text_end`), marks its tokens consumed.
    fn push(&mut self, mut q: Quantity) {
        let end = q.tokens.end;
        self.finish(&mut q, end);
        self.quantities.push(q);
    }

    fn finish(&mut self, q: &mut Quantity, text_end: usize) {
        let anchor = q.anchor;
        self.finish_with_prefix(q, anchor, text_end);
    }

    fn time_at(&mut self, i: usize) -> Option<usize> {
        let tok = self.t.get(i)?;
        let (minutes, mut end) = match tok.kind {
            TokKind::Time(m) => (m, i + 1),
            TokKind::Number(n)
                if n.decimals == 0
                    && !n.ordinal
                    && (1.0..=12.0).contains(&n.value)
                    && matches!(self.word(i + 1), Some("am" | "pm")) =>
            {
                ((n.value as u32) * 60, i + 1)
            }
            _ => return None,
        };
        let mut minutes = minutes;
        // am / pm, also written "a.m." / "p.m.".
        let meridiem = match self.word(end) {
            Some("am") => Some(false),
            Some("pm") => Some(true),
            Some("a") | Some("p")
                if self.t.get(end + 1).is_some_and(|t| t.is_sym('.'))
                    && self.word(end + 2) == Some("m") =>
            {
                let pm = self.word(end) == Some("p");
                end += 2;
                Some(pm)
            }
            _ => None,
        };
        if let Some(pm) = meridiem {
            end += 1;
            let h = minutes / 60;
            let h = match (pm, h) {
                (false, 12) => 0,
                (true, h) if h < 12 => h + 12,
                (_, h) => h,
            };
            minutes = h * 60 + minutes % 60;
        }
        let (q, qstart) = self.hedge_before(i);
        let qualifier = if q == Qualifier::Approx {
            q
        } else {
            Qualifier::Exact
        };
        let qstart = if qualifier == Qualifier::Approx {
            qstart
        } else {
            i
        };
        self.push(Quantity {
            dim: Dimension::TimeOfDay,
            per: None,
            lo: f64::from(minutes),
            hi: f64::from(minutes),
            round: 0.0,
            place: 0.0,
            qualifier,
            text: String::new(),
            span: 0..0,
            tokens: qstart..end,
            anchor: i,
        });
        Some(end)
    }

    /// `€12`, `$ 5`, `VDC 12`.
    fn money_prefix_at(&mut self, i: usize) -> Option<usize> {
        let tok = self.t.get(i)?;
        let code = CURRENCIES
            .iter()
            .find(|(s, _, before, _)| *before && *s == tok.lower)
            .map(|(_, c, _, _)| *c)?;
        let n = self.t.get(i + 1)?.number()?;
        if n.ordinal {
            return None;
        }
        let (scale, mut end) = self.scale_at(i + 2);
        // "€5m" / "€5k": money scales.
        if scale == 1.0 {
            if let Some(w) = self.word(i + 2) {
                let s = match w {
                    "m" => 1e6,
                    "k" => 1e3,
                    _ => 1.0,
                };
                if s != 1.0 && self.t[i + 2].start == self.t[i + 1].end {
                    return self.push_money(i, i + 1, n, s, code, i + 3);
                }
            }
        }
        // "€5–8" ranges.
        let mut hi_lit = None;
        if self
            .t
            .get(end)
            .is_some_and(|t| is_dash(t) || t.lower == "to")
        {
            if let Some(m) = self.t.get(end + 1).and_then(Token::number) {
                hi_lit = Some(m);
                end += 2;
            }
        }
        let end_q = self.push_money(i, i + 1, n, scale, code, end)?;
        if let Some(m) = hi_lit {
            if let Some(q) = self.quantities.last_mut() {
                q.hi = m.value * scale;
                if q.hi < q.lo {
                    q.hi = q.lo;
                }
            }
        }
        Some(end_q)
    }

    fn push_money(
        &mut self,
        start: usize,
        anchor: usize,
        n: NumLit,
        scale: f64,
        code: &str,
        end: usize,
    ) -> Option<usize> {
        let (qualifier, qstart) = self.hedge_before(start);
        let (qualifier, end) = self.bound_after(qualifier, end);
        let (per, per_end) = self.rate_at(end);
        let mut q = Quantity {
            dim: Dimension::Money(code.to_string()),
            per,
            lo: n.value * scale,
            hi: n.value * scale,
            round: round_of(n) * scale,
            place: place_of(n) * scale,
            qualifier,
            text: String::new(),
            span: 0..0,
            tokens: qstart.min(start)..per_end,
            anchor,
        };
        q.tokens.start = qstart.min(start);
        self.finish_with_prefix(&mut q, start, per_end);
        self.quantities.push(q);
        Some(per_end)
    }

    /// Like `finish`, but the text starts at `text_start` (a currency prefix).
    fn finish_with_prefix(&mut self, q: &mut Quantity, text_start: usize, text_end: usize) {
        let start = self.t[text_start].start;
        let end = self.t[text_end.max(text_start + 1).min(self.t.len()) - 1].end;
        q.span = start..end;
        q.text = self.sentence[start..end].to_string();
        for c in &mut self.consumed[q.tokens.clone()] {
            *c = true;
        }
    }

    /// A scale word at `i` (`million`): its factor and the index after it.
    fn scale_at(&self, i: usize) -> (f64, usize) {
        match self.word(i) {
            Some(w) => match SCALES.iter().find(|(s, _)| *s == w) {
                Some((_, f)) => (*f, i + 1),
                None => (1.0, i),
            },
            None => (1.0, i),
        }
    }

    /// The number (or number word) at `i` as a literal.
    fn literal(&self, i: usize) -> Option<NumLit> {
        let tok = self.t.get(i)?;
        if let Some(n) = tok.number() {
            return Some(n);
        }
        if tok.is_word() {
            let v = NUMBER_WORDS.iter().find(|(w, _)| *w == tok.lower)?.1;
            return Some(NumLit {
                value: v,
                decimals: 0,
                ordinal: false,
                grouped: false,
                int_digits: if v >= 100.0 {
                    3
                } else if v >= 10.0 {
                    2
                } else {
                    1
                },
            });
        }
        None
    }

    fn is_identifier(&self, i: usize) -> Option<String> {
        if i == 0 {
            return None;
        }
        let prev = self.t.get(i - 1)?;
        if !prev.is_word() {
            return None;
        }
        let lower = prev.lower.as_str();
        let singular = singular_of(lower);
        let capital = prev.text.chars().next().is_some_and(char::is_uppercase);
        let naming = NAMING_NOUNS.contains(&lower) || NAMING_NOUNS.contains(&singular);
        let proper = capital
            && i >= 2
            && !is_stop(lower)
            && self.month_at(i - 1).is_none()
            && !HEDGES.iter().any(|(w, _)| w.len() == 1 && w[0] == lower)
            && !CURRENCIES.iter().any(|(s, _, _, _)| *s == lower);
        // A unit after the number means a measurement: "Line 3 km" is not a thing.
        if (naming || proper) && self.unit_at(i + 1).is_none() {
            Some(format!("{singular} "))
        } else {
            None
        }
    }

    fn number_at(&mut self, i: usize) -> Option<usize> {
        let n = self.literal(i)?;
        let is_word_number = self.t[i].is_word();
        if n.ordinal {
            return None;
        }
        // Part of a name: "SmolLM2-135M-Instruct", "A-380", "135M".
        if !is_word_number {
            let tok = &self.t[i];
            let glued_left = i >= 2
                && self.t[i - 1].is_sym('-')
                && self.t[i - 1].end == tok.start
                && self.t[i - 2].end == self.t[i - 1].start
                && self.t[i - 2].is_word();
            let glued_right = self.t.get(i + 1).is_some_and(|t| {
                t.is_word()
                    && t.start == tok.end
                    && self.unit_at(i + 1).is_none()
                    && self.currency_after(i + 1).is_none()
                    && self.scale_at(i + 1).0 == 1.0
                    && t.lower != "s"
            });
            if glued_left || glued_right {
                return None;
            }
        }
        // Identifiers, with the numbers listed after them ("Zones 1, 2 and 3", "Zones 1-3").
        if !is_word_number {
            if let Some(prefix) = self.is_identifier(i) {
                let mut j = i;
                loop {
                    self.identifiers.push(j);
                    let name = format!("{prefix}{}", self.t[j].lower);
                    self.identifier_names.push(name);
                    self.consumed[j] = true;
                    let sep = self.t.get(j + 1);
                    let is_sep = sep.is_some_and(|t| {
                        is_dash(t)
                            || t.is_sym(',')
                            || matches!(t.lower.as_str(), "and" | "or" | "to")
                    });
                    let next_is_number = self.t.get(j + 2).and_then(Token::number).is_some()
                        && self.unit_at(j + 3).is_none();
                    if is_sep && next_is_number {
                        j += 2;
                    } else {
                        break;
                    }
                }
                return Some(j + 1);
            }
        }
        // Years and decades.
        if !is_word_number {
            if let Some(end) = self.year_at(i) {
                return Some(end);
            }
        }
        let (scale, after_scale) = self.scale_at(i + 1);
        // Range: "10-15 minutes", "10 to 15 minutes", "between 10 and 15 minutes".
        let mut hi_lit: Option<NumLit> = None;
        let mut unit_pos = after_scale;
        if scale == 1.0 && self.unit_at(i + 1).is_none() {
            let between = i > 0 && matches!(self.word(i - 1), Some("between" | "from"));
            let connector = self
                .t
                .get(i + 1)
                .is_some_and(|t| is_dash(t) || t.lower == "to" || (between && t.lower == "and"));
            if connector {
                if let Some(m) = self.literal(i + 2) {
                    if !m.ordinal && m.value >= n.value {
                        hi_lit = Some(m);
                        unit_pos = i + 3;
                    }
                }
            }
        }
        let (scale, unit_pos) = if hi_lit.is_some() {
            let (s, p) = self.scale_at(unit_pos);
            (s, p)
        } else {
            (scale, unit_pos)
        };
        // A hyphen between number and unit: "10-minute walk".
        let unit_start = if self.t.get(unit_pos).is_some_and(|t| t.is_sym('-'))
            && self.unit_at(unit_pos + 1).is_some()
        {
            unit_pos + 1
        } else {
            unit_pos
        };
        let (mut qualifier, qstart) = self.hedge_before(i);
        // "1,000+ passengers".
        let unit_pos = if self.t.get(unit_pos).is_some_and(|t| t.is_sym('+')) {
            qualifier = Qualifier::AtLeast;
            unit_pos + 1
        } else {
            unit_pos
        };
        let unit_start = if unit_start + 1 == unit_pos && self.t[unit_start].is_sym('+') {
            unit_pos
        } else {
            unit_start
        };
        let lo = n.value * scale;
        let hi = hi_lit.map_or(lo, |m| m.value * scale);
        let lit_for_precision = hi_lit.unwrap_or(n);
        if let Some((dim, factor, after_unit)) = self.unit_at(unit_start) {
            let (qualifier, end) = self.bound_after(qualifier, after_unit);
            let (per, per_end) = if dim == UnitDim::Speed {
                (None, end)
            } else {
                self.rate_at(end)
            };
            let mut q = Quantity {
                dim: dim.dimension(),
                per,
                lo: lo * factor,
                hi: hi * factor,
                round: round_of(lit_for_precision) * scale * factor,
                place: place_of(lit_for_precision) * scale * factor,
                qualifier,
                text: String::new(),
                span: 0..0,
                tokens: qstart..per_end,
                anchor: i,
            };
            self.finish(&mut q, per_end);
            self.quantities.push(q);
            return Some(per_end);
        }
        if let Some((code, after_cur)) = self.currency_after(unit_pos) {
            let (qualifier, end) = self.bound_after(qualifier, after_cur);
            let (per, per_end) = self.rate_at(end);
            let mut q = Quantity {
                dim: Dimension::Money(code.to_string()),
                per,
                lo,
                hi,
                round: round_of(lit_for_precision) * scale,
                place: place_of(lit_for_precision) * scale,
                qualifier,
                text: String::new(),
                span: 0..0,
                tokens: qstart..per_end,
                anchor: i,
            };
            self.finish(&mut q, per_end);
            self.quantities.push(q);
            return Some(per_end);
        }
        // A count: a noun phrase follows.
        let noun_start = if self.t.get(unit_pos).is_some_and(|t| t.is_sym('-')) {
            unit_pos + 1
        } else {
            unit_pos
        };
        let (mut nouns, mut noun_end) = self.noun_phrase(noun_start);
        let mut per_part = None;
        if nouns.is_empty() {
            if self.word(noun_start) == Some("of") {
                // "31 of the 40 stations": a part of a counted whole.
                let whole = (noun_start + 1..noun_start + 6)
                    .find(|&j| self.t.get(j).and_then(Token::number).is_some())?;
                let after = if self.t.get(whole + 1).is_some_and(|t| t.is_sym('-')) {
                    whole + 2
                } else {
                    whole + 1
                };
                let (whole_nouns, whole_end) = self.noun_phrase(after);
                if whole_nouns.is_empty() {
                    return None;
                }
                nouns = whole_nouns;
                noun_end = whole_end;
                per_part = Some("part".to_string());
            } else {
                let ends_clause = match self.t.get(noun_start) {
                    None => true,
                    Some(t) => {
                        matches!(t.kind, TokKind::Sym('.' | ',' | ';' | ')' | ':'))
                            || matches!(t.lower.as_str(), "and" | "or")
                    }
                };
                // A plain number follows a function word or `=` / `:` ("defaults to 15");
                // after a noun it names something ("turn 2").
                let led_plainly = i > 0
                    && (is_stop(&self.t[i - 1].lower)
                        || self.t[i - 1].is_sym('=')
                        || self.t[i - 1].is_sym(':'));
                if !ends_clause || is_word_number || scale != 1.0 && hi_lit.is_none() {
                    return None;
                }
                // "a Heron unit 3, a Pika unit 1": the noun of an earlier count carries over;
                // otherwise a plain number ("defaults to 15").
                nouns = self
                    .quantities
                    .iter()
                    .rev()
                    .find_map(|q| match &q.dim {
                        Dimension::Count(n) if !n.is_empty() && q.per.is_none() => Some(n.clone()),
                        _ => None,
                    })
                    .unwrap_or_default();
                if nouns.is_empty() && !led_plainly {
                    return None;
                }
                noun_end = noun_start;
            }
        }
        let (qualifier, qual_end) = if per_part.is_some() {
            (qualifier, noun_end)
        } else {
            self.bound_after(qualifier, noun_end)
        };
        let (per, per_end) = match per_part {
            Some(p) => (Some(p), noun_end),
            None => self.rate_at(qual_end),
        };
        let mut q = Quantity {
            dim: Dimension::Count(nouns),
            per,
            lo,
            hi,
            round: round_of(lit_for_precision) * scale,
            place: place_of(lit_for_precision) * scale,
            qualifier,
            text: String::new(),
            span: 0..0,
            tokens: qstart..noun_start,
            anchor: i,
        };
        self.finish(&mut q, per_end);
        // The rate words and trailing bounds are consumed too; the noun stays a content word.
        if q.per.as_deref() != Some("part") {
            for c in &mut self.consumed[noun_end..per_end] {
                *c = true;
            }
        }
        let is_part = q.per.as_deref() == Some("part");
        self.quantities.push(q);
        // After a part, go on reading the whole ("40 stations") as its own quantity.
        Some(if is_part { noun_start } else { per_end })
    }

    fn year_at(&mut self, i: usize) -> Option<usize> {
        let year = self.year_number(i)?;
        let led = i > 0 && self.lower(i - 1).is_some_and(|w| YEAR_LEADS.contains(&w));
        // Older years only after a word that leads years ("in 1342").
        if !((1800..=2100).contains(&year) || led && (1000..1800).contains(&year)) {
            return None;
        }
        // Decade: "1990s".
        if self
            .t
            .get(i + 1)
            .is_some_and(|t| t.lower == "s" && t.start == self.t[i].end)
            && year % 10 == 0
        {
            let lo = days_from_civil(year, 1, 1) as f64;
            let hi = days_from_civil(year + 9, 12, 31) as f64;
            self.push_date(i, i + 2, Dimension::Date, lo, hi);
            return Some(i + 2);
        }
        if self.unit_at(i + 1).is_some()
            || self.currency_after(i + 1).is_some()
            || self.scale_at(i + 1).0 != 1.0
        {
            return None;
        }
        let next_word = self.word(i + 1);
        let noun_follows = next_word
            .is_some_and(|w| !is_stop(w) && w.len() > 2 && w.ends_with('s') && !w.ends_with("ss"))
            && !self.t[i + 1]
                .text
                .chars()
                .next()
                .is_some_and(char::is_uppercase);
        if !led && noun_follows {
            return None;
        }
        let lo = days_from_civil(year, 1, 1) as f64;
        let hi = days_from_civil(year, 12, 31) as f64;
        self.push_date(i, i + 1, Dimension::Date, lo, hi);
        Some(i + 1)
    }

    /// A unit at `i`: its dimension, factor and the index after it.
    fn unit_at(&self, i: usize) -> Option<(UnitDim, f64, usize)> {
        for (spelling, dim, factor) in UNITS {
            let fits = spelling.iter().enumerate().all(|(k, s)| {
                self.t.get(i + k).is_some_and(|t| {
                    if s.chars().count() == 1 && s.chars().all(char::is_alphabetic) {
                        t.text == *s
                    } else {
                        t.lower == *s
                    }
                })
            });
            if !fits {
                continue;
            }
            let end = i + spelling.len();
            // A unit word must end there: "m" in "m-long" is fine, "min" must not be "minimum".
            return Some((*dim, *factor, end));
        }
        None
    }

    fn currency_after(&self, i: usize) -> Option<(&'static str, usize)> {
        let tok = self.t.get(i)?;
        CURRENCIES
            .iter()
            .find(|(s, _, _, after)| *after && *s == tok.lower)
            .map(|(_, c, _, _)| (*c, i + 1))
    }

    /// The noun phrase after a number: words up to and including the first plural-looking
    /// word, at most three, stop words and numbers ending it; stemmed.
    fn noun_phrase(&self, i: usize) -> (Vec<String>, usize) {
        let mut nouns = Vec::new();
        let mut j = i;
        while nouns.len() < 3 {
            let Some(t) = self.t.get(j) else { break };
            if t.is_sym('-') && !nouns.is_empty() {
                j += 1;
                continue;
            }
            if !t.is_word() || is_stop(&t.lower) || NUMBER_WORDS.iter().any(|(w, _)| *w == t.lower)
            {
                break;
            }
            if self.month_at(j).is_some() && !nouns.is_empty() {
                break;
            }
            nouns.push(crate::text::stem(&t.lower));
            j += 1;
            let plural = t.lower.len() > 2 && t.lower.ends_with('s') && !t.lower.ends_with("ss");
            if plural {
                break;
            }
        }
        if nouns.len() > 1 && !self.t[j - 1].lower.ends_with('s') {
            // No plural head found: keep only the first word.
            let first_end = (i..j).find(|&k| self.t[k].is_word()).map_or(j, |k| k + 1);
            nouns.truncate(1);
            j = first_end;
        }
        (nouns, j)
    }

    /// A rate after a quantity: `per hour`, `a day`, `/h`, `daily`, `each way`.
    fn rate_at(&self, i: usize) -> (Option<String>, usize) {
        let normal = |w: &str| -> Option<String> {
            let singular = w.strip_suffix('s').filter(|s| s.len() > 2).unwrap_or(w);
            RATE_UNITS
                .iter()
                .find(|(k, _)| *k == w || *k == singular)
                .map(|(_, v)| (*v).to_string())
        };
        if let Some(w) = self.word(i) {
            if let Some((_, v)) = RATE_WORDS.iter().find(|(k, _)| *k == w) {
                return (Some((*v).to_string()), i + 1);
            }
            if matches!(w, "per" | "a" | "an" | "each" | "every") {
                if let Some(u) = self.word(i + 1) {
                    let rate = match w {
                        "per" => normal(u).or_else(|| Some(crate::text::stem(u))),
                        _ => normal(u),
                    };
                    if let Some(r) = rate {
                        return (Some(r), i + 2);
                    }
                }
            }
        }
        if self.t.get(i).is_some_and(|t| t.is_sym('/')) {
            if let Some(u) = self.word(i + 1) {
                if let Some(r) = normal(u) {
                    return (Some(r), i + 2);
                }
            }
        }
        (None, i)
    }

    /// The hedge before a number at `i`: its qualifier and the index of its first word.
    fn hedge_before(&self, i: usize) -> (Qualifier, usize) {
        for (words, q) in HEDGES {
            let len = words.len();
            if i < len {
                continue;
            }
            let start = i - len;
            if words
                .iter()
                .enumerate()
                .all(|(k, w)| self.lower(start + k) == Some(*w))
            {
                // "approx." — skip its dot.
                return (*q, start);
            }
            // "approx. 5": the dot sits between hedge and number.
            if i > len
                && self.t.get(i - 1).is_some_and(|t| t.is_sym('.'))
                && words
                    .iter()
                    .enumerate()
                    .all(|(k, w)| self.lower(start - 1 + k) == Some(*w))
            {
                return (*q, start - 1);
            }
        }
        (Qualifier::Exact, i)
    }

    /// A bound after a quantity (`1,000+`, `or more`, `or less`).
    fn bound_after(&self, q: Qualifier, i: usize) -> (Qualifier, usize) {
        if self.t.get(i).is_some_and(|t| t.is_sym('+')) {
            return (Qualifier::AtLeast, i + 1);
        }
        match (self.word(i), self.word(i + 1)) {
            (Some("or" | "and"), Some("more" | "longer" | "above" | "over" | "older" | "up"))
                if self.word(i + 2) != Some("to") =>
            {
                (Qualifier::AtLeast, i + 2)
            }
            (
                Some("or" | "and"),
                Some("less" | "fewer" | "shorter" | "below" | "under" | "younger"),
            ) => (Qualifier::AtMost, i + 2),
            _ => (q, i),
        }
    }
}

/// "zones" → "zone", "class" stays "class".
pub(crate) fn singular_of(w: &str) -> &str {
    match w.strip_suffix('s') {
        Some(s) if !s.ends_with('s') && s.len() > 1 => s,
        _ => w,
    }
}

fn is_stop(w: &str) -> bool {
    crate::text::is_stop_word(w)
}

fn is_dash(t: &Token) -> bool {
    t.is_sym('-') || t.is_sym('–') || t.is_sym('—')
}

/// Half a unit of the last written decimal; 0 for integers.
fn round_of(n: NumLit) -> f64 {
    if n.decimals == 0 {
        0.0
    } else {
        0.5 * 10f64.powi(-(n.decimals as i32))
    }
}

/// Half the place value of the last non-zero digit.
fn place_of(n: NumLit) -> f64 {
    if n.decimals > 0 {
        return round_of(n);
    }
    let mut v = n.value.round() as u64;
    if v == 0 {
        return 0.5;
    }
    let mut place = 1.0;
    while v.is_multiple_of(10) {
        v /= 10;
        place *= 10.0;
    }
    place / 2.0
}

/// Joins `2 hours 15 minutes` (and `2 hours and 15 minutes`) into one duration.
fn merge_compound_durations(qs: Vec<Quantity>, tokens: &[Token], sentence: &str) -> Vec<Quantity> {
    let mut out: Vec<Quantity> = Vec::with_capacity(qs.len());
    for q in qs {
        if let Some(prev) = out.last_mut() {
            let gap_ok = prev.tokens.end == q.tokens.start
                || (prev.tokens.end + 1 == q.tokens.start
                    && tokens
                        .get(prev.tokens.end)
                        .is_some_and(|t| t.lower == "and" || t.is_sym(',')));
            let both_durations = prev.dim == Dimension::Duration
                && q.dim == Dimension::Duration
                && prev.per.is_none()
                && prev.lo == prev.hi
                && q.lo == q.hi
                && q.lo < prev.lo
                && q.qualifier == Qualifier::Exact;
            if gap_ok && both_durations {
                prev.lo += q.lo;
                prev.hi += q.hi;
                prev.round = q.round;
                prev.place = q.place;
                prev.per = q.per.clone();
                prev.tokens.end = q.tokens.end;
                prev.span.end = q.span.end;
                prev.text = sentence[prev.span.clone()].to_string();
                continue;
            }
        }
        out.push(q);
    }
    out
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
pub fn days_from_civil(y: i32, m: u32, d: u32) -> i64 {
    let y = i64::from(y) - i64::from(m <= 2);
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(m);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day number (inverse of [`days_from_civil`]).
pub fn civil_from_days(z: i64) -> (i32, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    ((y + i64::from(m <= 2)) as i32, m, d)
}

fn days_in_month(y: i32, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(s: &str) -> Quantity {
        let p = parse(s);
        assert_eq!(p.quantities.len(), 1, "{s}: {:?}", p.quantities);
        p.quantities[0].clone()
    }

    fn cmp(a: &str, b: &str) -> Comparison {
        compare(&one(a), &one(b), &Tolerance::default())
    }

    #[test]
    fn thousands_separators_do_not_change_a_number() {
        for s in [
            "1,200 passengers",
            "1 200 passengers",
            "1200 passengers",
            "1\u{202f}200 passengers",
        ] {
            let q = one(s);
            assert_eq!(q.lo, 1200.0, "{s}");
            assert!(matches!(q.dim, Dimension::Count(_)));
        }
        assert_eq!(
            cmp("1,200 passengers", "1200 passengers"),
            Comparison::Consistent
        );
        assert_eq!(
            cmp("1,200 passengers", "1,300 passengers"),
            Comparison::Different
        );
    }

    #[test]
    fn decimals_and_scale_words_are_read() {
        assert_eq!(one("3.5 km").lo, 3500.0);
        assert_eq!(one("1.2 million passengers").lo, 1_200_000.0);
        assert_eq!(
            cmp("1.2 million passengers", "1,200,000 passengers"),
            Comparison::Consistent
        );
        assert_eq!(one("twelve stations").lo, 12.0);
        assert_eq!(
            cmp("twelve stations", "12 stations"),
            Comparison::Consistent
        );
    }

    #[test]
    fn lengths_convert_to_metres() {
        assert_eq!(cmp("3 km", "3000 m"), Comparison::Consistent);
        assert_eq!(cmp("3 km", "30 km"), Comparison::Different);
        assert_eq!(cmp("3 kilometres", "3,000 metres"), Comparison::Consistent);
        assert_eq!(cmp("350 cm", "3.5 m"), Comparison::Consistent);
        assert_eq!(
            cmp("3.5 km", "3,460 m"),
            Comparison::Consistent,
            "rounded to 0.1 km"
        );
        assert_eq!(cmp("3 km", "3.4 km"), Comparison::Different);
        assert_eq!(cmp("45-km line", "45 km"), Comparison::Consistent);
    }

    #[test]
    fn masses_durations_speeds_and_areas_convert_to_base_units() {
        assert_eq!(cmp("2 t", "2,000 kg"), Comparison::Consistent);
        assert_eq!(cmp("500 g", "0.5 kg"), Comparison::Consistent);
        assert_eq!(cmp("90 minutes", "1.5 hours"), Comparison::Consistent);
        assert_eq!(cmp("2 hours 15 minutes", "135 min"), Comparison::Consistent);
        assert_eq!(
            cmp("2 h and 15 min", "2 hours 20 minutes"),
            Comparison::Different
        );
        assert_eq!(cmp("2 days", "48 hours"), Comparison::Consistent);
        assert_eq!(cmp("120 km/h", "120 kph"), Comparison::Consistent);
        assert_eq!(cmp("36 km/h", "10 m/s"), Comparison::Consistent);
        assert_eq!(cmp("160 km/h", "140 km/h"), Comparison::Different);
        assert_eq!(cmp("2 km²", "2 sq km"), Comparison::Consistent);
        assert_eq!(
            cmp("1 square kilometre", "100 hectares"),
            Comparison::Consistent
        );
        assert_eq!(cmp("5,000 m²", "0.5 ha"), Comparison::Consistent);
        assert_eq!(cmp("10-minute walk", "10 minutes"), Comparison::Consistent);
    }

    #[test]
    fn different_dimensions_are_not_comparable() {
        assert_eq!(cmp("3 km", "3 kg"), Comparison::Incomparable);
        assert_eq!(cmp("3 hours", "3 km/h"), Comparison::Incomparable);
        assert_eq!(cmp("12 trains", "12 stations"), Comparison::Incomparable);
        assert_eq!(
            cmp("12 trains per hour", "12 trains"),
            Comparison::Incomparable
        );
        assert_eq!(
            cmp("12 trains per hour", "10 trains an hour"),
            Comparison::Different
        );
        assert_eq!(cmp("12 electric trains", "8 trains"), Comparison::Different);
    }

    #[test]
    fn money_compares_only_within_one_currency() {
        assert_eq!(cmp("€12", "12 EUR"), Comparison::Consistent);
        assert_eq!(cmp("12 euros", "EUR 12.00"), Comparison::Consistent);
        assert_eq!(cmp("$5", "5 USD"), Comparison::Consistent);
        assert_eq!(cmp("4.50 VDC", "VDC 4.5"), Comparison::Consistent);
        assert_eq!(cmp("4.50 VDC", "4.80 VDC"), Comparison::Different);
        assert_eq!(cmp("12 EUR", "12 USD"), Comparison::Incomparable);
        assert_eq!(cmp("€12", "$13"), Comparison::Incomparable);
        assert_eq!(
            cmp("€1.2 million", "1,200,000 euros"),
            Comparison::Consistent
        );
        assert_eq!(one("€12").text, "€12");
        assert_eq!(
            one("It costs 4.50 VDC per day.").per.as_deref(),
            Some("day")
        );
    }

    #[test]
    fn percentages_compare_with_percentages() {
        assert_eq!(cmp("15%", "15 percent"), Comparison::Consistent);
        assert_eq!(cmp("15 per cent", "15 %"), Comparison::Consistent);
        assert_eq!(cmp("15%", "20%"), Comparison::Different);
        assert_eq!(cmp("15%", "15 stations"), Comparison::Incomparable);
    }

    #[test]
    fn dates_in_every_spelling_are_the_same_day() {
        let spellings = [
            "March 5, 2021",
            "5 March 2021",
            "2021-03-05",
            "5 Mar 2021",
            "5th of March 2021",
            "March 5th 2021",
        ];
        for a in spellings {
            for b in spellings {
                assert_eq!(cmp(a, b), Comparison::Consistent, "{a} vs {b}");
            }
        }
        assert_eq!(cmp("March 5, 2021", "March 6, 2021"), Comparison::Different);
        assert_eq!(cmp("March 2021", "5 March 2021"), Comparison::Consistent);
        assert_eq!(cmp("April 2021", "5 March 2021"), Comparison::Different);
        assert_eq!(cmp("in 2021", "5 March 2021"), Comparison::Consistent);
        assert_eq!(cmp("in 1987", "in 1988"), Comparison::Different);
        assert_eq!(cmp("on 5 March", "2021-03-05"), Comparison::Consistent);
        assert_eq!(cmp("on 5 March", "2021-03-06"), Comparison::Different);
        assert_eq!(cmp("in the 1990s", "in 1994"), Comparison::Consistent);
        assert_eq!(cmp("before 1990", "in 1987"), Comparison::Consistent);
        assert_eq!(cmp("around 1986", "in 1987"), Comparison::Consistent);
    }

    #[test]
    fn bare_years_are_dates_and_years_as_durations_are_durations() {
        assert_eq!(one("It opened in 1987.").dim, Dimension::Date);
        assert_eq!(one("It took 12 years.").dim, Dimension::Duration);
        assert!(matches!(one("2000 passengers").dim, Dimension::Count(_)));
    }

    #[test]
    fn times_of_day_are_minutes_after_midnight() {
        assert_eq!(cmp("at 17:30", "5:30 pm"), Comparison::Consistent);
        assert_eq!(cmp("6 am", "06:00"), Comparison::Consistent);
        assert_eq!(cmp("at 05:30", "at 05:45"), Comparison::Different);
    }

    #[test]
    fn hedges_widen_the_interval_by_the_rounding_they_imply() {
        assert_eq!(
            cmp("about 1,200 passengers", "1,187 passengers"),
            Comparison::Consistent
        );
        assert_eq!(
            cmp("1,200 passengers", "1,187 passengers"),
            Comparison::Different
        );
        assert_eq!(
            cmp("about 1,200 passengers", "1,400 passengers"),
            Comparison::Different
        );
        assert_eq!(
            cmp("over 1,000 passengers", "1,187 passengers"),
            Comparison::Consistent
        );
        assert_eq!(
            cmp("over 2,000 passengers", "1,187 passengers"),
            Comparison::Different
        );
        assert_eq!(cmp("up to 160 km/h", "140 km/h"), Comparison::Consistent);
        assert_eq!(
            cmp("nearly 20 minutes", "19 minutes"),
            Comparison::Consistent
        );
        assert_eq!(
            cmp("1,000+ passengers", "1,500 passengers"),
            Comparison::Consistent
        );
        assert_eq!(cmp("10-15 minutes", "12 minutes"), Comparison::Consistent);
        assert_eq!(
            cmp("between 10 and 15 minutes", "20 minutes"),
            Comparison::Different
        );
        assert_eq!(
            cmp("100 km", "100.4 km"),
            Comparison::Consistent,
            "0.5 % relative"
        );
    }

    #[test]
    fn identifiers_are_not_quantities() {
        let p = parse("Line 3 has 12 stations and Zones 1-3 cost 4 VDC.");
        let texts: Vec<&str> = p.quantities.iter().map(|q| q.text.as_str()).collect();
        assert_eq!(texts, vec!["12 stations", "4 VDC"]);
        assert_eq!(p.identifier_names, vec!["line 3", "zone 1", "zone 3"]);
        let p = parse("Platform 9 is 200 m long.");
        assert_eq!(p.quantities.len(), 1);
        assert_eq!(p.identifier_names, vec!["platform 9"]);
    }

    #[test]
    fn quantities_keep_their_written_text() {
        let p = parse("The Blue Line is 32.5 km long, has 18 stations and costs €2.40 per trip.");
        let texts: Vec<&str> = p.quantities.iter().map(|q| q.text.as_str()).collect();
        assert_eq!(texts, vec!["32.5 km", "18 stations", "€2.40 per trip"]);
    }

    #[test]
    fn civil_day_numbers_round_trip() {
        for (y, m, d) in [(1970, 1, 1), (2000, 2, 29), (2021, 3, 5), (1899, 12, 31)] {
            assert_eq!(civil_from_days(days_from_civil(y, m, d)), (y, m, d));
        }
        assert_eq!(days_from_civil(1970, 1, 2), 1);
    }
}
