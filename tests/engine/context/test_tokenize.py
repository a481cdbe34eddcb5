from engine.context.tokenize import count_terms, path_terms, split_identifier, tokenize


def test_camel_case_identifier_yields_itself_and_its_parts() -> None:
    assert split_identifier("parseHTTPRequest") == ("parsehttprequest", "parse", "http", "request")


def test_snake_case_identifier_yields_itself_and_its_parts() -> None:
    assert split_identifier("charge_credit_card") == ("charge_credit_card", "charge", "credit", "card")


def test_single_word_is_lowercased_once() -> None:
    assert split_identifier("Invoice") == ("invoice",)


def test_stop_words_and_single_letters_are_dropped() -> None:
    assert tokenize("how is the x of InvoiceBuilder") == ["invoicebuilder", "invoice", "builder"]


def test_count_terms_counts_parts_across_identifiers() -> None:
    counts = count_terms("total_amount = amount + amountDue")
    assert counts["amount"] == 3
    assert counts["total_amount"] == 1
    assert counts["amountdue"] == 1


def test_path_terms_keep_directory_and_file_words() -> None:
    assert path_terms("engine/context/RepoIndex.py") == [
        "engine",
        "context",
        "repoindex",
        "repo",
        "index",
        "py",
    ]
