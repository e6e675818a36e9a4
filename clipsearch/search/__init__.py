"""What a search shows: query arithmetic, the words of names and queries, the results (folding, variety, cuts),
near-duplicates, what a collection holds, the places, dates and cameras a query's words name, the score chart."""
