package yamlconf

import "strings"

// suggest returns the known key the user most likely meant by key, or ""
// when none is close: a typo of a letter or two (transpositions count as
// one), or key cut short ("webhook_secret" for "webhook_secret_file").
func suggest(key string, known []string) string {
	best, bestDist := "", 0
	maxDist := 1
	if len(key) >= 5 {
		maxDist = 2
	}
	for _, k := range known {
		d := EditDistance(key, k)
		if len(key) >= 4 && strings.HasPrefix(k, key) {
			d = min(d, maxDist)
		}
		if d <= maxDist && (best == "" || d < bestDist) {
			best, bestDist = k, d
		}
	}
	return best
}

// EditDistance is the optimal string alignment distance of a and b
// (Levenshtein plus adjacent transpositions, so "porjects" is one edit
// from "projects"), for short names only: past 64 bytes it answers 1024.
func EditDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 10 // no key is that long; do not spend the work
	}
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
