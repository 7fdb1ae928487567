// Whether a packed dataset's token ids mean what a model's tokenizer says they mean. A dataset
// packed with another tokenizer (bytes scored on a model of tok512, a Llama-2 dataset on a GPT-2
// model) was read as other tokens: eval scored it with exit 0 and a meaningless loss, and
// `train --init-from` trained the model on it.
#pragma once

#include <string_view>

#include "anchorctx/data/dataset.h"
#include "anchorctx/data/tokenizer.h"

namespace anchorctx::data {

// Whether `a` and `b` give the same ids: the same vocabulary size, bos and eos, and the same ids
// for a probe text of ASCII prose, digits, whitespace runs, accented Latin, CJK and emoji (two
// files of one tokenizer in different formats, the byte tokenizer and its tokenizer.json, are the
// same; any two different vocabularies differ on it).
bool same_token_ids(const Tokenizer& a, const Tokenizer& b);

// Throws anchorctx::Error naming `command`, the dataset and both tokenizers unless `model`
// tokenizes as the dataset's tokenizer did: the same content hash (meta.json), else the same ids
// as the dataset's tokenizer file loaded again from its recorded spec. Where that file is gone
// (a dataset moved to another machine) and the hashes differ, a warning on stderr, unless even
// the vocabulary sizes differ (an error).
void require_dataset_tokenizer(const Dataset& dataset, const Tokenizer& model,
                               std::string_view command, std::string_view model_source);

}  // namespace anchorctx::data
