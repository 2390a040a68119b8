//! The synthetic corpus: a stochastic grammar of English-like stories that knows the exact
//! probability of every document it emits, so the validation split's entropy floor is exact.
//!
//! A story introduces a cast of one to three named people, then tells sentences about them until
//! it stops. The grammar gives a model things to learn at several ranges:
//! - a Zipfian lexicon of made-up words (short words are frequent, as in English);
//! - number agreement: `a dog runs`, `some dogs run`, `every dog runs`, `the dogs run`;
//! - copying: the cast is named in the first sentence and only those names appear later;
//! - pronouns that agree with the previous sentence's subject: a name ending in `a`, `e` or `i`
//!   is referred to as `She`, other names as `He`, plural subjects as `They`, others as `It`;
//! - nested brackets of three kinds, `(`, `[` and `{`, that must be closed in order, and verb
//!   agreement across them: `The dogs (a cat [the bird sings] sees Mara) chase the birds.`
//!
//! Exactness. The generator makes every random decision through [`Decider::choose`], which picks
//! one of a [`Choice`]'s alternatives, each of which emits a fixed text first. The log-probability
//! of a document is the sum of the log-probabilities of the alternatives taken. That equals the
//! log-probability of the *string* only if no other sequence of decisions emits the same string,
//! so the grammar is built to be unambiguous:
//! - every decision emits text at once (no silent choices);
//! - the alternatives of one decision start with different texts, and none is a prefix of
//!   another except where the shorter one ends a word (`dog` and `dogs`), which is resolved by
//!   what follows, since a word is always followed by a space or punctuation, never by a letter;
//! - all surface forms of all words are distinct (checked when the lexicon is built), so a word
//!   tells which alternative produced it.
//!
//! Under these rules a left-to-right reading of a document finds exactly one matching alternative
//! at every decision: [`Grammar::document_bits`] does that reading and fails loudly if it ever
//! finds zero or two. The tests parse sampled documents and also enumerate every derivation of a
//! tiny grammar to check that no two derivations share a string and that probabilities sum to one.
//!
//! A document ends with `\n`, which appears nowhere else, so documents joined into a stream stay
//! independent: the stream's probability is the product of its documents' probabilities.

use std::collections::HashSet;
use std::rc::Rc;

use super::Rng;

/// Seed of the lexicon; fixed so every run and every seed sees the same language.
const LEXICON_SEED: u64 = 0x001e_c51c_0420;
/// Exponent of the Zipf law over each word class (weight of the word of rank r is 1/(r+1)^s).
const ZIPF_EXPONENT: f64 = 1.0;
/// Brackets nest at most this deep.
const MAX_BRACKET_DEPTH: usize = 2;
/// Probability that a story goes on with another sentence after each one.
const P_CONTINUE: f64 = 0.85;
/// Probability that a noun phrase gets (another) adjective before its noun.
const P_ADJECTIVE: f64 = 0.25;
/// Probability that a subject is followed by a bracketed sentence, when nesting allows it.
const P_BRACKET: f64 = 0.10;

/// How many words of each class the lexicon holds.
#[derive(Clone, Copy, Debug)]
pub struct LexiconSizes {
    pub nouns: usize,
    pub verbs: usize,
    pub adjectives: usize,
    pub adverbs: usize,
    pub names: usize,
}

impl LexiconSizes {
    /// The sizes of the corpus every run trains on.
    pub const STANDARD: LexiconSizes = LexiconSizes {
        nouns: 400,
        verbs: 200,
        adjectives: 120,
        adverbs: 50,
        names: 80,
    };
}

/// One sampled document and its exact information content.
#[derive(Clone, Debug)]
pub struct Document {
    /// The text, ending with `\n`.
    pub text: String,
    /// -log2 P(text) under the grammar.
    pub bits: f64,
}

/// A decision that stops the generator early: a parse that does not match, or (in tests) the
/// point where an enumeration branches.
#[derive(Debug)]
pub(crate) enum Halt {
    Mismatch(String),
    #[cfg(test)]
    Branch,
}

/// Makes the grammar's random decisions: sampling draws them, parsing reads them off a text.
pub(crate) trait Decider {
    /// Emits text that follows with certainty from the decisions so far.
    fn emit(&mut self, text: &str) -> Result<(), Halt>;
    /// Takes one alternative of `choice` and emits its text; returns its index.
    fn choose<T>(&mut self, choice: &Choice<T>) -> Result<usize, Halt>;
}

/// One random decision: alternatives, the text each emits, their probabilities and payloads.
pub(crate) struct Choice<T> {
    texts: Vec<Rc<str>>,
    probs: Vec<f64>,
    cumulative: Vec<f64>,
    items: Vec<T>,
}

impl<T: Copy> Choice<T> {
    /// Builds a decision from (text, weight, payload) triples; weights are normalised.
    fn new(alternatives: impl IntoIterator<Item = (Rc<str>, f64, T)>) -> Choice<T> {
        let mut texts = Vec::new();
        let mut weights = Vec::new();
        let mut items = Vec::new();
        for (text, weight, item) in alternatives {
            assert!(weight > 0.0, "alternative `{text}` has weight {weight}");
            texts.push(text);
            weights.push(weight);
            items.push(item);
        }
        let total: f64 = weights.iter().sum();
        let probs: Vec<f64> = weights.iter().map(|w| w / total).collect();
        let mut cumulative = Vec::with_capacity(probs.len());
        let mut sum = 0.0;
        for p in &probs {
            sum += p;
            cumulative.push(sum);
        }
        let distinct: HashSet<&str> = texts.iter().map(|t| &**t).collect();
        assert_eq!(
            distinct.len(),
            texts.len(),
            "a decision has two equal alternatives"
        );
        Choice {
            texts,
            probs,
            cumulative,
            items,
        }
    }

    fn pick<D: Decider>(&self, decider: &mut D) -> Result<T, Halt> {
        Ok(self.items[decider.choose(self)?])
    }
}

impl<T> Choice<T> {
    fn sample_index(&self, rng: &mut Rng) -> usize {
        let u = rng.uniform();
        self.cumulative
            .partition_point(|&c| c <= u)
            .min(self.probs.len() - 1)
    }
}

/// The alternatives of one word class: `total` probability shared by the words' Zipf weights;
/// `item(i)` is the payload of the i-th word.
fn word_class<'w, T>(
    words: &'w [Word],
    total: f64,
    item: impl Fn(usize) -> T + 'w,
) -> impl Iterator<Item = (Rc<str>, f64, T)> + 'w {
    let sum: f64 = words.iter().map(|w| w.weight).sum();
    words
        .iter()
        .enumerate()
        .map(move |(i, word)| (word.text.clone(), total * word.weight / sum, item(i)))
}

/// A word of the lexicon with its Zipf weight.
#[derive(Clone, Debug)]
struct Word {
    text: Rc<str>,
    weight: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Number {
    Singular,
    Plural,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Determiner {
    The,
    A,
    Some,
    Every,
}

/// What a later pronoun can refer to: the subject of the previous top-level sentence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pronoun {
    She,
    He,
    It,
    They,
}

impl Pronoun {
    fn text(self) -> &'static str {
        match self {
            Pronoun::She => "She",
            Pronoun::He => "He",
            Pronoun::It => "It",
            Pronoun::They => "They",
        }
    }
    fn number(self) -> Number {
        if self == Pronoun::They {
            Number::Plural
        } else {
            Number::Singular
        }
    }
}

/// How a clause ends: a sentence with a period, a bracketed sentence with its closing bracket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Closer {
    Period,
    Round,
    Square,
    Curly,
}

impl Closer {
    const ALL: [Closer; 4] = [Closer::Period, Closer::Round, Closer::Square, Closer::Curly];
    fn text(self) -> &'static str {
        match self {
            Closer::Period => ".",
            Closer::Round => ")",
            Closer::Square => "]",
            Closer::Curly => "}",
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Subject {
    Determiner(Determiner),
    Name(usize),
    Pronoun(Pronoun),
}

#[derive(Clone, Copy, Debug)]
enum NounPhraseWord {
    Adjective,
    Noun(Number),
}

#[derive(Clone, Copy, Debug)]
enum AfterSubject {
    Open(Closer),
    Verb(usize),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tail {
    End,
    And,
    Adverb,
}

/// The grammar: its lexicon and the decisions that do not depend on the story so far.
pub struct Grammar {
    names: Vec<Word>,
    /// Whether each name takes `She` (else `He`).
    name_is_she: Vec<bool>,
    /// Whether each verb (by index) takes an object.
    verb_is_transitive: Vec<bool>,
    cast_size: Choice<usize>,
    /// Noun-phrase continuation after `the`, after `a`/`every`, after `some`.
    after_the: Choice<NounPhraseWord>,
    after_a: Choice<NounPhraseWord>,
    after_some: Choice<NounPhraseWord>,
    /// Indexed by [number][whether a bracket may open].
    after_subject: [[Choice<AfterSubject>; 2]; 2],
    /// Verb forms by number: `runs` (singular), `run` (plural).
    verbs: [Choice<usize>; 2],
    /// Indexed by [closer][whether an adverb may come].
    tails: [[Choice<Tail>; 2]; 4],
    continue_story: Choice<bool>,
}

impl Grammar {
    /// The grammar of the standard corpus.
    pub fn standard() -> Grammar {
        Grammar::new(LexiconSizes::STANDARD, LEXICON_SEED)
    }

    /// A grammar over a lexicon of the given sizes, drawn from `seed`.
    pub fn new(sizes: LexiconSizes, seed: u64) -> Grammar {
        assert!(sizes.names >= 1 && sizes.nouns >= 1 && sizes.verbs >= 1);
        let mut rng = Rng::new(seed);
        // Function words and every form the grammar writes itself are taken before any
        // generated word, so that no word can be mistaken for them.
        let mut taken: HashSet<String> = [
            "the", "a", "some", "every", "and", "she", "he", "it", "they", "this", "is", "story",
            "about", "one", "two", "three", "person", "people",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let noun_stems = make_words(&mut rng, sizes.nouns, &mut taken, |w| {
            vec![w.to_string(), format!("{w}s")]
        });
        let verb_stems = make_words(&mut rng, sizes.verbs, &mut taken, |w| {
            vec![w.to_string(), format!("{w}s")]
        });
        let adjectives = make_words(&mut rng, sizes.adjectives, &mut taken, |w| {
            vec![w.to_string()]
        });
        let adverb_stems = make_words(&mut rng, sizes.adverbs, &mut taken, |w| {
            vec![format!("{w}ly")]
        });
        let name_stems = make_words(&mut rng, sizes.names, &mut taken, |w| {
            vec![w.to_string(), capitalise(w)]
        });

        let nouns_singular = zipf_words(noun_stems.iter().map(|w| w.to_string()));
        let nouns_plural = zipf_words(noun_stems.iter().map(|w| format!("{w}s")));
        let verbs_singular = zipf_words(verb_stems.iter().map(|w| format!("{w}s")));
        let verbs_plural = zipf_words(verb_stems.iter().map(|w| w.to_string()));
        let adjectives = zipf_words(adjectives.iter().map(|w| w.to_string()));
        let adverbs = zipf_words(adverb_stems.iter().map(|w| format!(" {w}ly")));
        let names = zipf_words(name_stems.iter().map(|w| capitalise(w)));
        let name_is_she = name_stems
            .iter()
            .map(|w| w.ends_with(['a', 'e', 'i']))
            .collect();
        // Every other verb by frequency takes an object.
        let verb_is_transitive = (0..verb_stems.len()).map(|i| i % 2 == 0).collect();

        let cast_size = Choice::new(
            [("one", 0.3), ("two", 0.45), ("three", 0.25)]
                .into_iter()
                .take(sizes.names.min(3))
                .enumerate()
                .map(|(i, (text, w))| (Rc::from(text), w, i + 1)),
        );

        // After a determiner: an adjective (then again), or the noun, whose form fixes the number.
        let p_noun = 1.0 - P_ADJECTIVE;
        let adjective = || word_class(&adjectives, P_ADJECTIVE, |_| NounPhraseWord::Adjective);
        let singular = |p| {
            word_class(&nouns_singular, p, |_| {
                NounPhraseWord::Noun(Number::Singular)
            })
        };
        let plural = |p| word_class(&nouns_plural, p, |_| NounPhraseWord::Noun(Number::Plural));
        let after_the = Choice::new(
            singular(p_noun * 2.0 / 3.0)
                .chain(plural(p_noun / 3.0))
                .chain(adjective()),
        );
        let after_a = Choice::new(singular(p_noun).chain(adjective()));
        let after_some = Choice::new(plural(p_noun).chain(adjective()));

        // After the subject: its verb, agreeing in number, or an opening bracket.
        let after_subject_for = |forms: &[Word], brackets: bool| {
            let p_bracket = if brackets { P_BRACKET } else { 0.0 };
            let openings = [
                ("(", Closer::Round, 0.5),
                ("[", Closer::Square, 0.3),
                ("{", Closer::Curly, 0.2),
            ]
            .into_iter()
            .filter(|_| brackets)
            .map(|(open, closer, share)| {
                (
                    Rc::from(open),
                    P_BRACKET * share,
                    AfterSubject::Open(closer),
                )
            });
            Choice::new(word_class(forms, 1.0 - p_bracket, AfterSubject::Verb).chain(openings))
        };
        let after_subject = [
            [
                after_subject_for(&verbs_singular, false),
                after_subject_for(&verbs_singular, true),
            ],
            [
                after_subject_for(&verbs_plural, false),
                after_subject_for(&verbs_plural, true),
            ],
        ];
        let verbs = [
            Choice::new(word_class(&verbs_singular, 1.0, |i| i)),
            Choice::new(word_class(&verbs_plural, 1.0, |i| i)),
        ];

        // After a verb phrase: the closer, ` and` another verb, or an adverb (at most one).
        let tails = Closer::ALL.map(|closer| {
            let end: (Rc<str>, Tail) = (Rc::from(closer.text()), Tail::End);
            let and: (Rc<str>, Tail) = (Rc::from(" and"), Tail::And);
            let without_adverb =
                Choice::new([(end.0.clone(), 0.83, end.1), (and.0.clone(), 0.17, and.1)]);
            let with_adverb = Choice::new(
                [(end.0, 0.60, end.1), (and.0, 0.12, and.1)]
                    .into_iter()
                    .chain(word_class(&adverbs, 0.28, |_| Tail::Adverb)),
            );
            [without_adverb, with_adverb]
        });

        let continue_story = continue_story_choice(P_CONTINUE);

        Grammar {
            names,
            name_is_she,
            verb_is_transitive,
            cast_size,
            after_the,
            after_a,
            after_some,
            after_subject,
            verbs,
            tails,
            continue_story,
        }
    }

    /// Draws one document.
    pub fn sample_document(&self, rng: &mut Rng) -> Document {
        let mut sampler = Sampler {
            rng,
            text: String::new(),
            bits: 0.0,
        };
        match self.story(&mut sampler) {
            Ok(()) => Document {
                text: sampler.text,
                bits: sampler.bits,
            },
            Err(halt) => unreachable!("sampling never halts: {halt:?}"),
        }
    }

    /// Reads a document back and returns -log2 P(text): the exact information content.
    /// Fails if the text is not a document of this grammar or could be read two ways.
    pub fn document_bits(&self, text: &str) -> Result<f64, String> {
        let mut parser = Parser {
            input: text,
            position: 0,
            bits: 0.0,
        };
        match self.story(&mut parser) {
            Ok(()) if parser.position == text.len() => Ok(parser.bits),
            Ok(()) => Err(format!(
                "the document ends at byte {} but the text goes on",
                parser.position
            )),
            Err(Halt::Mismatch(message)) => Err(message),
            #[cfg(test)]
            Err(Halt::Branch) => unreachable!("the parser never branches"),
        }
    }

    pub(crate) fn story<D: Decider>(&self, d: &mut D) -> Result<(), Halt> {
        d.emit("This is a story about ")?;
        let cast_size = self.cast_size.pick(d)?;
        d.emit(if cast_size == 1 {
            " person: "
        } else {
            " people: "
        })?;
        let mut cast: Vec<usize> = Vec::new();
        for slot in 0..cast_size {
            if slot > 0 {
                d.emit(if slot + 1 == cast_size { " and " } else { ", " })?;
            }
            // The cast is drawn without replacement: the names left, renormalised.
            let remaining = Choice::new(
                self.names
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !cast.contains(i))
                    .map(|(i, name)| (name.text.clone(), name.weight, i)),
            );
            cast.push(remaining.pick(d)?);
        }
        d.emit(". ")?;
        let mut antecedent = None;
        loop {
            antecedent = Some(self.sentence(d, &cast, antecedent, Closer::Period, 0)?);
            if !self.continue_story.pick(d)? {
                return Ok(());
            }
        }
    }

    /// A clause ended by `closer`; returns what a pronoun in the next sentence refers to.
    fn sentence<D: Decider>(
        &self,
        d: &mut D,
        cast: &[usize],
        antecedent: Option<Pronoun>,
        closer: Closer,
        depth: usize,
    ) -> Result<Pronoun, Halt> {
        let top_level = closer == Closer::Period;
        let (number, referent) = self.subject(d, cast, antecedent, top_level)?;
        d.emit(" ")?;
        let may_open = usize::from(depth < MAX_BRACKET_DEPTH);
        let verb = match self.after_subject[number as usize][may_open].pick(d)? {
            AfterSubject::Verb(verb) => verb,
            AfterSubject::Open(inner_closer) => {
                self.sentence(d, cast, None, inner_closer, depth + 1)?;
                d.emit(" ")?;
                self.verbs[number as usize].pick(d)?
            }
        };
        self.predicate(d, cast, verb, number, closer)?;
        Ok(referent)
    }

    /// The subject: its number, and the pronoun that refers to it afterwards.
    fn subject<D: Decider>(
        &self,
        d: &mut D,
        cast: &[usize],
        antecedent: Option<Pronoun>,
        top_level: bool,
    ) -> Result<(Number, Pronoun), Halt> {
        let determiners = [
            (Determiner::The, "The", 0.40),
            (Determiner::A, "A", 0.15),
            (Determiner::Some, "Some", 0.10),
            (Determiner::Every, "Every", 0.05),
        ];
        let mut alternatives: Vec<(Rc<str>, f64, Subject)> = Vec::new();
        for (determiner, text, weight) in determiners {
            let text = if top_level {
                text.to_string()
            } else {
                text.to_lowercase()
            };
            alternatives.push((Rc::from(text), weight, Subject::Determiner(determiner)));
        }
        for &name in cast {
            let weight = 0.30 / cast.len() as f64;
            alternatives.push((self.names[name].text.clone(), weight, Subject::Name(name)));
        }
        if let (Some(pronoun), true) = (antecedent, top_level) {
            alternatives.push((Rc::from(pronoun.text()), 0.25, Subject::Pronoun(pronoun)));
        }
        match Choice::new(alternatives).pick(d)? {
            Subject::Determiner(determiner) => {
                let number = self.noun_phrase_rest(d, determiner)?;
                let pronoun = match number {
                    Number::Singular => Pronoun::It,
                    Number::Plural => Pronoun::They,
                };
                Ok((number, pronoun))
            }
            Subject::Name(name) => {
                let pronoun = if self.name_is_she[name] {
                    Pronoun::She
                } else {
                    Pronoun::He
                };
                Ok((Number::Singular, pronoun))
            }
            Subject::Pronoun(pronoun) => Ok((pronoun.number(), pronoun)),
        }
    }

    /// The words of a noun phrase after its determiner: adjectives, then the noun.
    fn noun_phrase_rest<D: Decider>(
        &self,
        d: &mut D,
        determiner: Determiner,
    ) -> Result<Number, Halt> {
        let choice = match determiner {
            Determiner::The => &self.after_the,
            Determiner::A | Determiner::Every => &self.after_a,
            Determiner::Some => &self.after_some,
        };
        loop {
            d.emit(" ")?;
            if let NounPhraseWord::Noun(number) = choice.pick(d)? {
                return Ok(number);
            }
        }
    }

    /// Verb, object, adverb, more verbs joined by `and`, and the closer.
    fn predicate<D: Decider>(
        &self,
        d: &mut D,
        cast: &[usize],
        first_verb: usize,
        number: Number,
        closer: Closer,
    ) -> Result<(), Halt> {
        let tails = &self.tails[closer as usize];
        let mut verb = first_verb;
        loop {
            if self.verb_is_transitive[verb] {
                d.emit(" ")?;
                self.object(d, cast)?;
            }
            let mut tail = tails[1].pick(d)?;
            if tail == Tail::Adverb {
                tail = tails[0].pick(d)?;
            }
            match tail {
                Tail::End => return Ok(()),
                Tail::And => {
                    d.emit(" ")?;
                    verb = self.verbs[number as usize].pick(d)?;
                }
                Tail::Adverb => unreachable!("no adverb follows an adverb"),
            }
        }
    }

    fn object<D: Decider>(&self, d: &mut D, cast: &[usize]) -> Result<(), Halt> {
        let mut alternatives: Vec<(Rc<str>, f64, Option<Determiner>)> = vec![
            (Rc::from("the"), 0.45, Some(Determiner::The)),
            (Rc::from("a"), 0.20, Some(Determiner::A)),
            (Rc::from("some"), 0.10, Some(Determiner::Some)),
            (Rc::from("every"), 0.05, Some(Determiner::Every)),
        ];
        for &name in cast {
            alternatives.push((
                self.names[name].text.clone(),
                0.20 / cast.len() as f64,
                None,
            ));
        }
        if let Some(determiner) = Choice::new(alternatives).pick(d)? {
            self.noun_phrase_rest(d, determiner)?;
        }
        Ok(())
    }
}

fn continue_story_choice(p_continue: f64) -> Choice<bool> {
    Choice::new([
        (Rc::from(" "), p_continue, true),
        (Rc::from("\n"), 1.0 - p_continue, false),
    ])
}

/// Draws decisions from a random number generator.
struct Sampler<'r> {
    rng: &'r mut Rng,
    text: String,
    bits: f64,
}

impl Decider for Sampler<'_> {
    fn emit(&mut self, text: &str) -> Result<(), Halt> {
        self.text.push_str(text);
        Ok(())
    }

    fn choose<T>(&mut self, choice: &Choice<T>) -> Result<usize, Halt> {
        let index = choice.sample_index(self.rng);
        self.text.push_str(&choice.texts[index]);
        self.bits -= choice.probs[index].log2();
        Ok(index)
    }
}

/// Reads decisions off a text, left to right, and insists that exactly one alternative matches.
struct Parser<'t> {
    input: &'t str,
    position: usize,
    bits: f64,
}

impl Decider for Parser<'_> {
    fn emit(&mut self, text: &str) -> Result<(), Halt> {
        if self.input[self.position..].starts_with(text) {
            self.position += text.len();
            Ok(())
        } else {
            Err(Halt::Mismatch(format!(
                "expected {text:?} at byte {}",
                self.position
            )))
        }
    }

    fn choose<T>(&mut self, choice: &Choice<T>) -> Result<usize, Halt> {
        let rest = &self.input[self.position..];
        let mut matching = choice
            .texts
            .iter()
            .enumerate()
            .filter(|(_, text)| matches_at(rest, text));
        match (matching.next(), matching.next()) {
            (Some((index, text)), None) => {
                self.position += text.len();
                self.bits -= choice.probs[index].log2();
                Ok(index)
            }
            (None, _) => Err(Halt::Mismatch(format!(
                "no alternative matches at byte {}",
                self.position
            ))),
            (Some((_, first)), Some((_, second))) => Err(Halt::Mismatch(format!(
                "ambiguous at byte {}: both {first:?} and {second:?} match",
                self.position
            ))),
        }
    }
}

/// Whether `option` is the text at the start of `rest`: a word must end where `rest`'s word
/// ends, so `dog` does not match `dogs`.
fn matches_at(rest: &str, option: &str) -> bool {
    let ends_in_letter = option
        .bytes()
        .last()
        .is_some_and(|b| b.is_ascii_alphabetic());
    let next = rest.as_bytes().get(option.len());
    rest.starts_with(option) && !(ends_in_letter && next.is_some_and(|b| b.is_ascii_alphabetic()))
}

fn capitalise(word: &str) -> String {
    let mut chars = word.chars();
    match chars.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

/// `count` pronounceable made-up words whose surface forms (`forms(word)`) are all new; the
/// forms are added to `taken`. Returned shortest first, which becomes the frequency order.
fn make_words(
    rng: &mut Rng,
    count: usize,
    taken: &mut HashSet<String>,
    forms: impl Fn(&str) -> Vec<String>,
) -> Vec<String> {
    const ONSETS: [&str; 30] = [
        "b", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "t", "v", "w", "z", "bl", "br",
        "cr", "dr", "fl", "gr", "pl", "pr", "sl", "sn", "st", "tr", "sh", "ch",
    ];
    const VOWELS: [&str; 9] = ["a", "e", "i", "o", "u", "ai", "ea", "oo", "ou"];
    // No coda ends in `s`: the plural and third-person forms add an `s`, and a stem ending in
    // `s` could then collide with another stem's form.
    const CODAS: [&str; 10] = ["", "", "", "n", "r", "l", "t", "m", "nd", "ck"];
    let mut words = Vec::with_capacity(count);
    while words.len() < count {
        let syllables = match rng.uniform() {
            u if u < 0.3 => 1,
            u if u < 0.8 => 2,
            _ => 3,
        };
        let mut word = String::new();
        for _ in 0..syllables {
            word.push_str(ONSETS[rng.below(ONSETS.len())]);
            word.push_str(VOWELS[rng.below(VOWELS.len())]);
            word.push_str(CODAS[rng.below(CODAS.len())]);
        }
        let word_forms = forms(&word);
        // Compare case-insensitively so that a name never equals a word.
        if word_forms.iter().any(|f| taken.contains(&f.to_lowercase())) {
            continue;
        }
        taken.extend(word_forms.iter().map(|f| f.to_lowercase()));
        words.push(word);
    }
    // Stable sort: equal lengths keep their random order.
    words.sort_by_key(|w| w.len());
    words
}

/// Gives words Zipf weights by rank.
fn zipf_words(texts: impl Iterator<Item = String>) -> Vec<Word> {
    texts
        .enumerate()
        .map(|(rank, text)| Word {
            text: Rc::from(text),
            weight: 1.0 / ((rank + 1) as f64).powf(ZIPF_EXPONENT),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn sampled_documents_parse_back_with_the_same_probability() {
        let grammar = Grammar::standard();
        let mut rng = Rng::new(7);
        let mut nested_brackets = 0;
        let mut pronouns = 0;
        for _ in 0..300 {
            let doc = grammar.sample_document(&mut rng);
            assert!(doc.text.ends_with('\n'));
            assert_eq!(doc.text.matches('\n').count(), 1, "{}", doc.text);
            let bits = grammar.document_bits(&doc.text).unwrap();
            assert!(
                (bits - doc.bits).abs() < 1e-9 * doc.bits,
                "{bits} != {}",
                doc.bits
            );
            let mut depth = 0i32;
            for c in doc.text.chars() {
                match c {
                    '(' | '[' | '{' => depth += 1,
                    ')' | ']' | '}' => depth -= 1,
                    _ => {}
                }
                assert!(depth >= 0);
                nested_brackets += usize::from(depth == 2);
            }
            assert_eq!(depth, 0);
            pronouns += usize::from(doc.text.contains(". She ") || doc.text.contains(". They "));
        }
        assert!(nested_brackets > 0 && pronouns > 0);
    }

    #[test]
    fn a_changed_document_is_rejected() {
        let grammar = Grammar::standard();
        let doc = grammar.sample_document(&mut Rng::new(3));
        let broken = doc.text.replacen("This", "That", 1);
        assert!(grammar.document_bits(&broken).is_err());
        let truncated = &doc.text[..doc.text.len() - 2];
        assert!(grammar.document_bits(truncated).is_err());
    }

    /// Replays a fixed prefix of decisions and halts at the first decision beyond it, reporting
    /// that decision's probabilities: a depth-first walk over all derivations.
    struct Replay<'p> {
        forced: &'p [usize],
        taken: usize,
        text: String,
        branch: Vec<f64>,
    }

    impl Decider for Replay<'_> {
        fn emit(&mut self, text: &str) -> Result<(), Halt> {
            self.text.push_str(text);
            Ok(())
        }

        fn choose<T>(&mut self, choice: &Choice<T>) -> Result<usize, Halt> {
            match self.forced.get(self.taken) {
                Some(&index) => {
                    self.taken += 1;
                    self.text.push_str(&choice.texts[index]);
                    Ok(index)
                }
                None => {
                    self.branch = choice.probs.clone();
                    Err(Halt::Branch)
                }
            }
        }
    }

    #[test]
    fn a_tiny_grammar_is_unambiguous_and_its_probabilities_sum_to_one() {
        let sizes = LexiconSizes {
            nouns: 2,
            verbs: 2,
            adjectives: 1,
            adverbs: 1,
            names: 2,
        };
        let mut grammar = Grammar::new(sizes, 11);
        // Short stories, so that most of the probability mass is enumerated.
        grammar.continue_story = continue_story_choice(0.2);
        // Derivations less likely than this are not expanded; their mass is counted as pruned.
        let threshold = 1e-6;
        let mut stack: Vec<(Vec<usize>, f64)> = vec![(Vec::new(), 1.0)];
        let mut complete: HashMap<String, f64> = HashMap::new();
        let mut complete_mass = 0.0;
        let mut pruned_mass = 0.0;
        while let Some((prefix, probability)) = stack.pop() {
            let mut replay = Replay {
                forced: &prefix,
                taken: 0,
                text: String::new(),
                branch: Vec::new(),
            };
            match grammar.story(&mut replay) {
                Ok(()) => {
                    let previous = complete.insert(replay.text.clone(), probability);
                    assert!(previous.is_none(), "two derivations of {:?}", replay.text);
                    complete_mass += probability;
                    let bits = grammar.document_bits(&replay.text).unwrap();
                    assert!((bits + probability.log2()).abs() < 1e-9);
                }
                Err(Halt::Branch) => {
                    for (index, p) in replay.branch.iter().enumerate() {
                        let child = probability * p;
                        if child < threshold {
                            pruned_mass += child;
                        } else {
                            let mut longer = prefix.clone();
                            longer.push(index);
                            stack.push((longer, child));
                        }
                    }
                }
                Err(Halt::Mismatch(message)) => panic!("{message}"),
            }
        }
        assert!(complete.len() > 1000, "only {} documents", complete.len());
        assert!((complete_mass + pruned_mass - 1.0).abs() < 1e-9);
        eprintln!("{} documents, pruned mass {pruned_mass}", complete.len());
        assert!(pruned_mass < 0.4, "pruned {pruned_mass}");
    }

    #[test]
    fn lexicon_forms_are_distinct_and_zipfian() {
        let grammar = Grammar::standard();
        let names: HashSet<&str> = grammar.names.iter().map(|n| &*n.text).collect();
        assert_eq!(names.len(), LexiconSizes::STANDARD.names);
        // Shorter words come first, so they get the larger weights.
        assert!(grammar.names[0].text.len() <= grammar.names[79].text.len());
        assert!(grammar.names[0].weight > grammar.names[1].weight);
    }
}
