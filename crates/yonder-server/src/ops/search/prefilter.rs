//! A faster way to find candidate lines for some case-insensitive patterns.
//!
//! `grep-searcher` finds matching lines by asking the matcher for the next
//! "candidate line" in a whole buffer, and `grep-regex` answers with its
//! `regex-automata` meta regex. For a pattern such as `(?i)Lattice|lanterns`
//! that regex gets a poor plan: its prefix literals, extracted under its own
//! limit of 250, shrink to the four case variants of `la`, which it judges
//! too short to be worth it, so it picks the "reverse inner" strategy, whose
//! inner literal is `a` or `A`: every `a` in the text starts a reverse DFA
//! search. A profile of a search over 2.1 GB spent two thirds of the
//! daemon's time there; rg 13 (built on the older regex engine) does not.
//!
//! [`LineMatcher`] extracts the pattern's prefix literals itself with a larger
//! budget (the 32 four-byte variants `latt`, `LaTt`, …, `lant`, …) and, when
//! those make a fast prefilter (Teddy) while the regex's own budget would
//! not, uses it to find candidate lines. `grep-searcher` then confirms each
//! candidate line with the full regex, which only ever sees short lines.
//! Every other call goes to the `grep-regex` matcher unchanged, so matches,
//! ranges and flags mean exactly what they mean to rg.
//!
//! Soundness: every match of the pattern starts with one of the extracted
//! prefix literals, so a line with a match contains one of them. The literals
//! come from the user's pattern parsed the way `grep-regex` parses it, with
//! case folding switched on whenever `grep-regex` might switch it on (smart
//! case), which can only add literals. `-w` only narrows the matches. A
//! literal holding the line terminator (possible before `grep-regex` strips
//! it from classes) could straddle two lines, so such a set is not used.
//! Remove this module once `grep-regex`/`regex-automata` pick a fast plan for
//! such patterns on their own.

use grep_matcher::{ByteSet, LineMatchKind, LineTerminator, Match, Matcher, NoError};
use grep_regex::{RegexCaptures, RegexMatcher};
use regex_automata::util::prefilter::Prefilter;
use regex_automata::{MatchKind, Span};
use regex_syntax::hir::Hir;
use regex_syntax::hir::literal::{ExtractKind, Extractor, Seq};

/// Budget for the number of literals while extracting prefixes: four times
/// regex-automata's 250, enough for the case variants of two words of 7–8
/// letters to keep four bytes each. Extraction stays cheap at this size
/// (it is bounded by this number), and the optimized set must still fit a
/// fast prefilter (Teddy takes at most 64 literals) to be used at all.
const LITERAL_BUDGET: usize = 1000;

/// regex-automata's own literal budget (`Extractor`'s default
/// `limit_total`), to tell whether its plan already has a fast prefilter.
const REGEX_BUDGET: usize = 250;

/// `grep-regex`'s default nesting limit, so a pattern it accepts parses here.
const NEST_LIMIT: u32 = 250;

/// How the pattern was given, as far as literal extraction cares.
#[derive(Debug, Clone, Copy)]
pub(super) struct PatternKind {
    pub fixed_strings: bool,
    /// Case-insensitive or smart case: the regex may fold case.
    pub may_fold_case: bool,
}

/// `grep-regex`'s matcher with, when it helps, a literal prefilter that
/// finds candidate lines.
#[derive(Debug, Clone)]
pub(super) struct LineMatcher {
    inner: RegexMatcher,
    prefilter: Option<Prefilter>,
}

impl LineMatcher {
    pub(super) fn new(inner: RegexMatcher, pattern: &str, kind: PatternKind) -> Self {
        let prefilter = if inner.line_terminator() == Some(LineTerminator::byte(b'\n')) {
            better_prefilter(pattern, kind)
        } else {
            // Candidate lines only make sense when a match cannot span lines.
            None
        };
        Self { inner, prefilter }
    }

    #[cfg(test)]
    fn has_prefilter(&self) -> bool {
        self.prefilter.is_some()
    }
}

/// The pattern as `grep-regex` would parse it, except that case folding is
/// on whenever it might be (smart case decides per pattern), so the result
/// matches a superset of what the real regex matches.
fn parse(pattern: &str, kind: PatternKind) -> Option<Hir> {
    let pattern = if kind.fixed_strings {
        regex_syntax::escape(pattern)
    } else {
        pattern.to_owned()
    };
    regex_syntax::ParserBuilder::new()
        .nest_limit(NEST_LIMIT)
        .utf8(false)
        .case_insensitive(kind.may_fold_case)
        .build()
        .parse(&format!("(?:{pattern})"))
        .ok()
}

/// The pattern's prefix literals under a literal budget, optimized the way
/// regex-automata optimizes its own (leftmost-first preference).
fn prefixes(hir: &Hir, budget: usize) -> Seq {
    let mut e = Extractor::new();
    e.kind(ExtractKind::Prefix).limit_total(budget);
    let mut seq = e.extract(hir);
    seq.optimize_for_prefix_by_preference();
    seq
}

/// A fast prefilter built from `seq`, if there is one. Empty literals (the
/// pattern can match the empty string) and literals holding the line
/// terminator rule it out.
fn fast_prefilter(seq: &Seq) -> Option<Prefilter> {
    let lits = seq.literals()?;
    if lits.is_empty()
        || lits
            .iter()
            .any(|l| l.as_bytes().is_empty() || l.as_bytes().contains(&b'\n'))
    {
        return None;
    }
    Prefilter::new(MatchKind::LeftmostFirst, lits).filter(Prefilter::is_fast)
}

/// A prefilter for candidate lines, only when it beats what the regex
/// engine would build itself: when the regex's own prefixes (regex-automata's
/// default budget) already make a fast prefilter, the regex finds whole
/// matches at that speed and needs no help.
fn better_prefilter(pattern: &str, kind: PatternKind) -> Option<Prefilter> {
    let hir = parse(pattern, kind)?;
    if fast_prefilter(&prefixes(&hir, REGEX_BUDGET)).is_some() {
        return None;
    }
    fast_prefilter(&prefixes(&hir, LITERAL_BUDGET))
}

impl Matcher for LineMatcher {
    type Captures = RegexCaptures;
    type Error = NoError;

    fn find_at(&self, haystack: &[u8], at: usize) -> Result<Option<Match>, NoError> {
        self.inner.find_at(haystack, at)
    }

    fn new_captures(&self) -> Result<RegexCaptures, NoError> {
        self.inner.new_captures()
    }

    fn capture_count(&self) -> usize {
        self.inner.capture_count()
    }

    fn capture_index(&self, name: &str) -> Option<usize> {
        self.inner.capture_index(name)
    }

    fn try_find_iter<F, E>(&self, haystack: &[u8], matched: F) -> Result<Result<(), E>, NoError>
    where
        F: FnMut(Match) -> Result<bool, E>,
    {
        self.inner.try_find_iter(haystack, matched)
    }

    fn captures_at(
        &self,
        haystack: &[u8],
        at: usize,
        caps: &mut RegexCaptures,
    ) -> Result<bool, NoError> {
        self.inner.captures_at(haystack, at, caps)
    }

    fn shortest_match_at(&self, haystack: &[u8], at: usize) -> Result<Option<usize>, NoError> {
        self.inner.shortest_match_at(haystack, at)
    }

    fn non_matching_bytes(&self) -> Option<&ByteSet> {
        self.inner.non_matching_bytes()
    }

    fn line_terminator(&self) -> Option<LineTerminator> {
        self.inner.line_terminator()
    }

    fn find_candidate_line(&self, haystack: &[u8]) -> Result<Option<LineMatchKind>, NoError> {
        match &self.prefilter {
            // The searcher confirms the line holding this position with the
            // full regex (through `shortest_match_at`) and, if it does not
            // match, asks again from the next line.
            Some(pre) => Ok(pre
                .find(haystack, Span::from(0..haystack.len()))
                .map(|s| LineMatchKind::Candidate(s.start))),
            None => self.inner.find_candidate_line(haystack),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use grep_regex::RegexMatcherBuilder;

    const FOLD: PatternKind = PatternKind {
        fixed_strings: false,
        may_fold_case: true,
    };
    const EXACT: PatternKind = PatternKind {
        fixed_strings: false,
        may_fold_case: false,
    };

    fn matcher(pattern: &str, kind: PatternKind) -> LineMatcher {
        let inner = RegexMatcherBuilder::new()
            .case_insensitive(kind.may_fold_case)
            .fixed_strings(kind.fixed_strings)
            .line_terminator(Some(b'\n'))
            .build(pattern)
            .unwrap();
        LineMatcher::new(inner, pattern, kind)
    }

    /// The matching lines, as grep-searcher reports them.
    fn lines(m: &LineMatcher, text: &str) -> Vec<u64> {
        lines_bytes(m, text.as_bytes())
    }

    fn lines_bytes<M: Matcher<Error = NoError>>(m: M, text: &[u8]) -> Vec<u64> {
        let mut found = Vec::new();
        grep_searcher::SearcherBuilder::new()
            .line_number(true)
            .build()
            .search_slice(
                m,
                text,
                grep_searcher::sinks::Lossy(|n, _| {
                    found.push(n);
                    Ok(true)
                }),
            )
            .unwrap();
        found
    }

    // The benchmark's pattern: the regex engine alone picks the slow
    // reverse-inner plan, the larger budget finds 4-byte case variants.
    #[test]
    fn case_insensitive_alternation_gets_a_prefilter() {
        let m = matcher("Lattice|lanterns", FOLD);
        assert!(m.has_prefilter());
        let text = "la la\nthe LATTICE\nno\nlAnTeRnS lit\nlatt lant\nxlatticex\n";
        assert_eq!(lines(&m, text), vec![2, 4, 6]);
    }

    // Candidates that are not matches (`latt`, `lant` alone) must not be
    // reported, also on the last line without a terminator.
    #[test]
    fn candidates_are_confirmed_by_the_regex() {
        let m = matcher("Lattice|lanterns", FOLD);
        assert_eq!(lines(&m, "lattic\nlanter"), Vec::<u64>::new());
        assert_eq!(lines(&m, "lattic\nlanterns"), vec![2]);
    }

    // Patterns the regex engine already accelerates keep its own plan.
    #[test]
    fn literal_and_short_patterns_keep_the_regex_plan() {
        assert!(!matcher("zephyrquux", EXACT).has_prefilter());
        assert!(!matcher("zephyrquux", FOLD).has_prefilter());
        assert!(!matcher("foo|bar", EXACT).has_prefilter());
        // No usable literals at all.
        assert!(!matcher(r"\w+", FOLD).has_prefilter());
        assert!(!matcher("a*", FOLD).has_prefilter());
        assert!(!matcher("", FOLD).has_prefilter());
    }

    // A line terminator inside a literal could straddle lines: unused.
    #[test]
    fn literals_with_a_line_terminator_are_not_used() {
        let hir = parse("[\\n]lattice|[\\n]lanterns", FOLD).unwrap();
        assert!(fast_prefilter(&prefixes(&hir, LITERAL_BUDGET)).is_none());
    }

    // Smart case may end up case-sensitive; folding in the prefilter only
    // adds candidates, so both readings find the same lines as the regex.
    #[test]
    fn smart_case_uppercase_pattern_stays_exact() {
        let inner = RegexMatcherBuilder::new()
            .case_smart(true)
            .line_terminator(Some(b'\n'))
            .build("Lattice|Lanterns")
            .unwrap();
        let m = LineMatcher::new(inner, "Lattice|Lanterns", FOLD);
        assert!(m.has_prefilter());
        assert_eq!(lines(&m, "lattice\nLattice\nLANTERNS\nLanterns\n"), vec![2, 4]);
    }

    // Non-ASCII case folding (the Kelvin sign folds to k) and non-UTF-8
    // haystacks behave as with the plain regex.
    #[test]
    fn unicode_folding_and_invalid_utf8() {
        let with = matcher("kelvins|kilns", FOLD);
        assert!(with.has_prefilter());
        let without = RegexMatcherBuilder::new()
            .case_insensitive(true)
            .line_terminator(Some(b'\n'))
            .build("kelvins|kilns")
            .unwrap();
        // Line 2 ends in a byte that is not UTF-8.
        let text = b"\xe2\x84\xaaelvins\nKILNS\xff\nkelvin\nk\xe2\x84\xaailns\n";
        let a = lines_bytes(&with, text);
        let b = lines_bytes(&without, text);
        assert_eq!(a, b);
        // Line 4 holds "\u{212A}ilns".
        assert_eq!(a, vec![1, 2, 4]);
    }

    #[test]
    fn fixed_strings_are_escaped() {
        let m = matcher(
            "Lattice.|lanterns",
            PatternKind {
                fixed_strings: true,
                may_fold_case: true,
            },
        );
        assert_eq!(lines(&m, "latticex|lanterns\nLATTICE.|LANTERNS\n"), vec![2]);
    }
}
