from django import forms

from microblog.core.errors import form_clean
from microblog.moderation.models import REPORT_TEXT_MAX_LENGTH, Reason
from microblog.moderation.services import report_text_clean


class ReportForm(forms.Form):
    reason = forms.ChoiceField(
        label="Why are you reporting this post?",
        choices=Reason.choices,
        widget=forms.RadioSelect,
        error_messages={
            "required": "Choose a reason from the list.",
            "invalid_choice": "Choose a reason from the list.",
        },
    )
    text = forms.CharField(
        label="Anything the moderators should know? (optional)",
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 3, "data-counter": REPORT_TEXT_MAX_LENGTH}),
    )

    def clean_text(self) -> str:
        return form_clean(report_text_clean, self.cleaned_data["text"])
