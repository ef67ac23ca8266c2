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
//! budget (the 16 three-byte variants `lat`, `LaT`, …, `lan`, …) and, when
//! those make a fast prefilter (Teddy) while the regex's own budget would
//! not, uses it to find candidate lines. It confirms each candidate line
//! with the full regex, which then only ever sees one short line, and keeps
//! that first match for [`LineMatcher::line_matches`], so the sink's match
//! ranges do not search the line from its start a second time. Every other
//! call goes to the `grep-regex` matcher unchanged, so matches, ranges and
//! flags mean exactly what they mean to rg.
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
use std::cell::Cell;

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

/// Literals are cut to this many bytes when that leaves fewer of them:
/// Teddy compares at most a few bytes per literal anyway and slows down as
/// literals are added. On the benchmark the 16 three-byte variants of
/// `(?i)Lattice|lanterns` ran 2.4× faster than the 32 four-byte ones and
/// found the same candidates.
const SHORT_LITERAL: usize = 3;

/// How the pattern was given, as far as literal extraction cares.
#[derive(Debug, Clone, Copy)]
pub(super) struct PatternKind {
    pub fixed_strings: bool,
    /// Case-insensitive or smart case: the regex may fold case.
    pub may_fold_case: bool,
}

/// `grep-regex`'s matcher with, when it helps, a literal prefilter that
/// finds candidate lines.
///
/// Not `Sync` (each walker thread clones its own): it remembers the first
/// match of the line it last confirmed.
#[derive(Debug, Clone)]
pub(super) struct LineMatcher {
    inner: RegexMatcher,
    prefilter: Option<Prefilter>,
    /// Set by `find_candidate_line` when it confirms a line: that line's
    /// address and length (without terminator) and its first match. The
    /// searcher hands that very line to the sink next, whose
    /// [`LineMatcher::line_matches`] takes it. Cleared by
    /// [`LineMatcher::forget`] before each file, so a line confirmed in a file
    /// whose search stopped early (binary data) is never taken for another.
    confirmed: Cell<Option<(usize, usize, Match)>>,
}

impl LineMatcher {
    pub(super) fn new(inner: RegexMatcher, pattern: &str, kind: PatternKind) -> Self {
        let prefilter = if inner.line_terminator() == Some(LineTerminator::byte(b'\n')) {
            better_prefilter(pattern, kind)
        } else {
            // Candidate lines only make sense when a match cannot span lines.
            None
        };
        Self {
            inner,
            prefilter,
            confirmed: Cell::new(None),
        }
    }

    /// Drops the remembered match: call before searching each file.
    pub(super) fn forget(&self) {
        self.confirmed.set(None);
    }

    /// Calls `f` with every match in `line` (without its terminator), like
    /// `find_iter`, starting from the match remembered for it if any.
    pub(super) fn line_matches(
        &self,
        line: &[u8],
        mut f: impl FnMut(Match) -> bool,
    ) -> Result<(), NoError> {
        let Some((addr, len, first)) = self.confirmed.take() else {
            return self.inner.find_iter(line, f);
        };
        if addr != line.as_ptr() as usize || len != line.len() {
            return self.inner.find_iter(line, f);
        }
        // With a prefilter every match starts with a non-empty literal, so
        // matches are never empty and searching on from each end finds
        // exactly what `find_iter` would.
        let mut next = Some(first);
        while let Some(m) = next {
            if !f(m) {
                break;
            }
            next = self.inner.find_at(line, m.end())?;
        }
        Ok(())
    }

    /// The prefilter's next candidate at or after `at` in `haystack`, which
    /// starts at a line start, confirmed by the regex: the line's first
    /// match (absolute offsets), remembered for [`Self::line_matches`].
    fn confirm(&self, pre: &Prefilter, haystack: &[u8]) -> Result<Option<Match>, NoError> {
        let mut at = 0;
        while at < haystack.len() {
            let Some(hit) = pre.find(haystack, Span::from(at..haystack.len())) else {
                return Ok(None);
            };
            let start = memchr::memrchr(b'\n', &haystack[at..hit.start]).map_or(at, |i| at + i + 1);
            let end = memchr::memchr(b'\n', &haystack[hit.start..])
                .map_or(haystack.len(), |i| hit.start + i);
            let line = &haystack[start..end];
            // No literal starts between `at` and the hit, so no match does:
            // searching from the hit finds the line's first match, with the
            // bytes before it still seen by look-behind (`\b`, `^`).
            if let Some(m) = self.inner.find_at(line, hit.start - start)? {
                self.confirmed
                    .set(Some((line.as_ptr() as usize, line.len(), m)));
                return Ok(Some(m.offset(start)));
            }
            at = end + 1;
        }
        Ok(None)
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
    let seq = prefixes(&hir, LITERAL_BUDGET);
    let mut short = seq.clone();
    short.keep_first_bytes(SHORT_LITERAL);
    short.dedup();
    if short.len() < seq.len()
        && let Some(pre) = fast_prefilter(&short)
    {
        return Some(pre);
    }
    fast_prefilter(&seq)
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
            // Already confirmed: the searcher reports the line holding this
            // position without searching it again.
            Some(pre) => Ok(self
                .confirm(pre, haystack)?
                .map(|m| LineMatchKind::Confirmed(m.start()))),
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
        assert_eq!(
            lines(&m, "lattice\nLattice\nLANTERNS\nLanterns\n"),
            vec![2, 4]
        );
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

    /// Every matching line with its match ranges, as the search sink sees
    /// them through `line_matches`.
    fn ranges(m: &LineMatcher, text: &[u8]) -> Vec<(u64, Vec<(usize, usize)>)> {
        struct S<'a>(&'a LineMatcher, Vec<(u64, Vec<(usize, usize)>)>);
        impl grep_searcher::Sink for S<'_> {
            type Error = std::io::Error;
            fn matched(
                &mut self,
                _: &grep_searcher::Searcher,
                sm: &grep_searcher::SinkMatch<'_>,
            ) -> Result<bool, std::io::Error> {
                let line = sm.bytes().strip_suffix(b"\n").unwrap_or(sm.bytes());
                let mut v = Vec::new();
                self.0
                    .line_matches(line, |r| {
                        v.push((r.start(), r.end()));
                        true
                    })
                    .unwrap();
                self.1.push((sm.line_number().unwrap(), v));
                Ok(true)
            }
        }
        let mut sink = S(m, Vec::new());
        m.forget();
        grep_searcher::SearcherBuilder::new()
            .line_number(true)
            .build()
            .search_slice(m, text, &mut sink)
            .unwrap();
        sink.1
    }

    // The remembered first match and the matches after it are exactly what
    // the regex's own find_iter gives, for several matches per line, matches
    // after a non-matching candidate on the same line, and look-behind.
    #[test]
    fn line_matches_equal_find_iter() {
        let text: &[u8] = b"x lattice LANTERNS lattice\nlatt then Lattice\n\nno\nlanterns";
        for pattern in ["Lattice|lanterns", r"lattice\b|lanterns\w*"] {
            let m = matcher(pattern, FOLD);
            assert!(m.has_prefilter(), "{pattern}");
            let plain = RegexMatcherBuilder::new()
                .case_insensitive(true)
                .line_terminator(Some(b'\n'))
                .build(pattern)
                .unwrap();
            let got = ranges(&m, text);
            let mut want = Vec::new();
            for (i, line) in text.split(|&b| b == b'\n').enumerate() {
                let mut v = Vec::new();
                plain
                    .find_iter(line, |r| {
                        v.push((r.start(), r.end()));
                        true
                    })
                    .unwrap();
                if !v.is_empty() {
                    want.push((i as u64 + 1, v));
                }
            }
            assert_eq!(got, want, "{pattern}");
            assert_eq!(got.len(), 3, "{pattern}");
        }
    }

    // A remembered match is only used for the very line it was found in.
    #[test]
    fn remembered_match_is_not_used_for_another_line() {
        let m = matcher("Lattice|lanterns", FOLD);
        assert_eq!(lines(&m, "a lattice\n"), vec![1]);
        // Same length, other content, other address: searched afresh.
        let other = b"lanterns!";
        let mut v = Vec::new();
        m.line_matches(other, |r| {
            v.push((r.start(), r.end()));
            true
        })
        .unwrap();
        assert_eq!(v, vec![(0, 8)]);
        // forget() drops it even for the same line.
        let text = b"a lattice";
        assert_eq!(lines_bytes(&m, text), vec![1]);
        m.forget();
        assert!(m.confirmed.take().is_none());
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
