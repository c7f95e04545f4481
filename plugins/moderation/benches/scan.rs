//! Throughput of the moderation detectors on chat text.
//!
//! Builds a deterministic corpus of at least 8 MB in memory: messages of 50-2000 bytes made
//! of ordinary chat prose (sentences below), with lines of examples/eval/moderation.jsonl
//! (PII, secrets, injections, abuse and their look-alikes) mixed into about 4 % of the
//! messages. Scans it message by message on one thread, seven times, and prints the
//! median, min and max throughput and the number of findings: once by wall-clock time, and
//! once by the CPU time of the scanning thread (Linux `/proc/thread-self/schedstat`), which
//! is the per-core figure and does not count time the thread waited for a busy CPU.
//!
//! ```text
//! CARGO_TARGET_DIR=/work/target-moderation cargo bench -p murmur-moderation --bench scan
//! ```

use std::time::Instant;

use murmur_moderation::{Detectors, Settings, Where};

/// Ordinary chat: questions, answers, small talk, a little code and some numbers.
const PROSE: &[&str] = &[
    "Can you help me plan a weekend trip to the coast?",
    "I was thinking of leaving on Friday evening and coming back on Sunday afternoon.",
    "What's the best way to cook salmon so it stays moist?",
    "Thanks, that worked perfectly.",
    "Could you explain the difference between a list and a tuple in Python?",
    "My manager wants the quarterly report by Thursday, and I haven't started the charts yet.",
    "The train was delayed by twenty minutes again this morning.",
    "Here is the paragraph I wrote for the introduction; can you make it more concise?",
    "We had about 40 people at the meetup, which is a record for us.",
    "Is it normal for a sourdough starter to smell a bit like vinegar?",
    "Sure! First, preheat the oven to 200 degrees, then line a tray with baking paper.",
    "I think the problem is that the loop never updates the counter.",
    "Let me know if you want a shorter version or a more formal tone.",
    "The meeting is at 14:30 in the small conference room on the second floor.",
    "It costs around 25 euros per person, drinks not included.",
    "Honestly I'm not sure which option is better, they both have trade-offs.",
    "Could you summarize the main arguments of the article in three bullet points?",
    "My cat keeps knocking things off the table at night.",
    "The function returns None when the input list is empty, which breaks the caller.",
    "We're considering moving the database to a managed service next year.",
    "Please rewrite this email so it sounds friendlier but still firm about the deadline.",
    "I ran 5 km today in just under 28 minutes.",
    "What are some good books about the history of mathematics?",
    "The kids want to go to the zoo, but the forecast says rain all day.",
    "You're right, I misread the question; the answer should be 42, not 24.",
    "Add a short note at the end thanking everyone for their patience.",
    "In the second step, mix the flour and the butter until it looks like breadcrumbs.",
    "Why does my bike chain keep slipping when I change gears?",
    "The new version of the app is much faster on older phones.",
    "I need a gift idea for my sister, she loves gardening and podcasts.",
    "That makes sense, but what happens if the server restarts halfway through?",
    "Our team is split across three time zones, so scheduling is hard.",
    "Can you translate this sentence into Spanish and German?",
    "The invoice total looks wrong; we were charged twice for shipping.",
    "Let's use a simple table with the name, the date and the status of each task.",
    "I'm learning to play the guitar and my fingertips hurt a lot.",
    "The library closes at 8 pm on weekdays and at 5 pm on Saturdays.",
    "Great, now make the title bold and add a subtitle under it.",
    "Which is healthier, brown rice or quinoa?",
    "The build failed with a missing semicolon on line 118 of main.c.",
    "We should probably ask the landlord before painting the walls.",
    "Remember to water the tomatoes every other day while I'm away.",
    "What would be a good name for a small bakery in a quiet village?",
    "Here's the updated list: apples, oats, milk, coffee and two lemons.",
    "He said the results would be ready by the end of the week.",
    "I'd like the summary to be under 150 words, please.",
    "Is there a way to undo the last commit without losing my changes?",
    "The museum has free entry on the first Sunday of every month.",
    "Could you check my reasoning? If A implies B and B implies C, then A implies C.",
    "The weather in April is unpredictable, so pack a light jacket.",
    "fn main() { let total: u32 = items.iter().map(|i| i.price).sum(); println!(\"{total}\"); }",
    "The chart should show monthly sales from January to June.",
    "Do you think it's rude to decline a wedding invitation by text?",
    "The printer on the third floor jams whenever someone prints double-sided.",
    "I'll send you the slides after the call so you can review them.",
    "Population grew by about 3 percent between 2015 and 2020.",
    "Can you suggest a stretching routine for people who sit all day?",
    "It's fine, no rush; tomorrow morning works for me too.",
    "The recipe calls for 250 ml of milk and 2 eggs, but I only have one egg.",
    "Okay, let's go with the second design and adjust the colours later.",
];

/// A small deterministic generator (64-bit LCG, high bits).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// The `user` and `reply` texts of the eval file.
fn eval_texts() -> Vec<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/eval/moderation.jsonl"
    );
    let Ok(data) = std::fs::read_to_string(path) else {
        eprintln!("warning: {path} not found; the corpus has no sensitive lines");
        return Vec::new();
    };
    data.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .flat_map(|v| {
            ["user", "reply"]
                .into_iter()
                .filter_map(|k| v.get(k).and_then(|t| t.as_str()).map(str::to_string))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn corpus(min_bytes: usize) -> Vec<String> {
    let sensitive = eval_texts();
    let mut rng = Lcg(0x5eed_cafe);
    let mut messages = Vec::new();
    let mut total = 0;
    while total < min_bytes {
        // Mostly short messages, some long: 50..=2000 bytes, skewed towards the short end.
        let r = rng.below(1000) as f64 / 1000.0;
        let target = 50 + (r * r * 1950.0) as usize;
        let mut msg = String::with_capacity(target + 200);
        let inject = !sensitive.is_empty() && rng.below(100) < 4;
        let at = if inject {
            rng.below(target / 80 + 1)
        } else {
            usize::MAX
        };
        let mut sentence = 0;
        while msg.len() < target {
            if sentence == at {
                msg.push_str(&sensitive[rng.below(sensitive.len())]);
            } else {
                msg.push_str(PROSE[rng.below(PROSE.len())]);
            }
            msg.push(if rng.below(6) == 0 { '\n' } else { ' ' });
            sentence += 1;
        }
        if msg.len() > 2000 {
            let mut cut = 2000;
            while !msg.is_char_boundary(cut) {
                cut -= 1;
            }
            msg.truncate(cut);
        }
        total += msg.len();
        messages.push(msg);
    }
    messages
}

/// CPU time of this thread in seconds, when the kernel reports it.
fn thread_cpu_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = stat.split_whitespace().next()?.parse().ok()?;
    (ns > 0).then(|| ns as f64 / 1e9)
}

fn summary(label: &str, mut rates: Vec<f64>, findings: usize) {
    rates.sort_by(f64::total_cmp);
    println!(
        "scan (user, all detectors), 7 runs, {label}: median {:.1} MB/s, min {:.1} MB/s, max {:.1} MB/s; {} findings per run",
        rates[rates.len() / 2],
        rates[0],
        rates[rates.len() - 1],
        findings
    );
}

fn main() {
    let detectors = match Detectors::new(&Settings::default()) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("cannot build the detectors: {e}");
            std::process::exit(1);
        }
    };
    let messages = corpus(8 << 20);
    let bytes: usize = messages.iter().map(String::len).sum();
    println!(
        "corpus: {} messages, {:.2} MB",
        messages.len(),
        bytes as f64 / 1e6
    );
    let mb = bytes as f64 / 1e6;
    let mut wall = Vec::new();
    let mut cpu = Vec::new();
    let mut findings = 0;
    for _ in 0..7 {
        let cpu_start = thread_cpu_secs();
        let start = Instant::now();
        let mut n = 0;
        for m in &messages {
            n += std::hint::black_box(detectors.scan(m, Where::User)).len();
        }
        wall.push(mb / start.elapsed().as_secs_f64());
        if let (Some(a), Some(b)) = (cpu_start, thread_cpu_secs()) {
            cpu.push(mb / (b - a).max(1e-9));
        }
        findings = n;
    }
    summary("wall clock", wall, findings);
    if cpu.len() == 7 {
        summary("thread CPU time (per core)", cpu, findings);
    }
    if std::env::var_os("SCAN_BREAKDOWN").is_some() {
        breakdown(&messages, mb);
    }
}

/// With `SCAN_BREAKDOWN=1`: the best of three runs with one detector group at a time.
fn breakdown(messages: &[String], mb: f64) {
    let groups: &[(&str, &[&str])] = &[
        ("abuse", &["abuse"]),
        ("prompt_injection", &["prompt_injection"]),
        ("generic_secret", &["generic_secret"]),
        (
            "tokens",
            &[
                "aws_access_key",
                "github_token",
                "slack_token",
                "openai_key",
                "private_key",
                "jwt",
            ],
        ),
        (
            "numeric pii",
            &["card", "iban", "ssn", "phone", "ip_address"],
        ),
        ("email", &["email"]),
    ];
    for (name, labels) in groups {
        let settings = Settings {
            detectors: Some(labels.iter().map(|l| l.to_string()).collect()),
            ..Settings::default()
        };
        let Ok(detectors) = Detectors::new(&settings) else {
            continue;
        };
        let mut best = 0.0f64;
        for _ in 0..3 {
            let a = thread_cpu_secs().unwrap_or(0.0);
            let start = Instant::now();
            for m in messages {
                std::hint::black_box(detectors.scan(m, Where::User));
            }
            let secs = thread_cpu_secs().map_or(start.elapsed().as_secs_f64(), |b| b - a);
            best = best.max(mb / secs.max(1e-9));
        }
        println!("  only {name:<18} {best:8.1} MB/s");
    }
}
