// Package check holds the checks of `kas check` that read git rather
// than the kas config: manifest globs that select no file (with the
// directory they probably meant) and an agent directory misspelt in the
// config project. kas.Check runs them with the rest of its verdicts.
package check
