//! The table of diagnostic codes: one stable code per kind of user error, documented in docs/diagnostics.md.

/// Defines `Code` and its tables from one list, so a code cannot be added without its id and title.
macro_rules! codes {
    ($($variant:ident = $id:literal, $title:literal;)*) => {
        /// A stable diagnostic code. `E0xxx` are user errors, `W0xxx` warnings, `E9xxx` bugs in nnc.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Code { $($variant),* }

        impl Code {
            /// Every code, in table order.
            pub const ALL: &'static [Code] = &[$(Code::$variant),*];

            /// The code as printed: `E0101`.
            pub fn id(self) -> &'static str {
                match self { $(Code::$variant => $id),* }
            }

            /// A one-line description of what the code means.
            pub fn title(self) -> &'static str {
                match self { $(Code::$variant => $title),* }
            }
        }
    };
}

codes! {
    Syntax = "E0001", "the text does not follow the grammar";
    BadLiteral = "E0002", "a number literal is out of range";
    UnknownLayer = "E0101", "a call names no layer or block";
    UnknownName = "E0102", "a name is not bound";
    UnknownArgument = "E0103", "a keyword argument does not exist for this layer or block";
    MissingArgument = "E0104", "a required argument is missing";
    DuplicateArgument = "E0105", "an argument is given twice";
    TooManyArguments = "E0106", "more positional arguments than the layer or block takes";
    DuplicateDefinition = "E0107", "a block, model or input is defined twice, or shadows a layer";
    DuplicateLayerName = "E0108", "two layers have the same label or position in one scope";
    Recursion = "E0109", "a block calls itself";
    BadImport = "E0110", "an imported file cannot be read or imports itself";
    UnknownImport = "E0111", "an imported name is not a block of that file";
    NoModel = "E0112", "the file has no model, or more than one";
    WrongType = "E0201", "a value has the wrong type";
    BadValue = "E0202", "a value is not one of those allowed";
    BadOperands = "E0203", "an operator is applied to values it does not take";
    Arithmetic = "E0204", "compile-time arithmetic overflows or divides by zero";
    MissingInput = "E0205", "a layer is called without its input tensor";
    OutputMismatch = "E0206", "a returned value does not match the declared output";
    BadReturn = "E0207", "a block or model returns nothing or the wrong number of values";
    BadIndex = "E0208", "an index is out of range or reads the symbolic batch dimension";
    NotAStage = "E0209", "a value is called or piped into as if it were a layer";
    BadDim = "E0210", "a declared dimension is not positive, or a symbolic one is not first";
    AddMismatch = "E0301", "tensors added or multiplied have different shapes";
    ConcatMismatch = "E0302", "tensors concatenated differ outside the concat axis";
    RankMismatch = "E0303", "a layer gets a tensor of the wrong rank or feature size";
    KernelTooLarge = "E0304", "a kernel does not fit its padded input";
    NonPositive = "E0305", "a size, count or stride is zero or negative";
    GroupMismatch = "E0306", "channels are not divisible by groups";
    ReshapeMismatch = "E0307", "a reshape changes the number of elements";
    TooLarge = "E0308", "a tensor or count is too large to represent";
    PadTooLarge = "E0309", "pooling padding exceeds half the kernel";
    DtypeMismatch = "E0310", "a layer gets a tensor of the wrong element type";
    AssertFailed = "E0311", "an assert in the model failed";
    UnknownTrainValue = "E0401", "an unknown loss, optimizer, initializer, regularizer or metric";
    BadHyperParameter = "E0402", "a hyper-parameter is out of range";
    BadTrainSetting = "E0403", "an unknown, duplicate or missing train setting";
    RuleMatchesNothing = "E0404", "a layer rule matches no layer";
    LossMismatch = "E0405", "the loss does not fit the model's output";
    Unused = "W0001", "a layer's result is never used";
    InternalBug = "E9001", "internal compiler error: an IR invariant does not hold";
}
